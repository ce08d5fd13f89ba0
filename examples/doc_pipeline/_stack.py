"""The monitoring stack of ``run_demo.py --stack``: collector, Prometheus and Jaeger as local processes.

The same components as ``collector/compose.yaml``, without Docker: the sidecar
collector built from ``collector/manifest.yaml`` (``collector/build.sh``) with
``collector/config.yaml``, Prometheus (``prometheus`` on the ``PATH``, e.g. Debian's
package) with ``collector/prometheus/prometheus.yml`` and Jaeger
(``collector/jaeger/build.sh``) with ``collector/jaeger/config.yaml`` as the trace
store. Every port is a free one on 127.0.0.1 and every file lives in one temporary
folder, removed by :meth:`Stack.stop`.

The collector's config gets one addition: its traces and metrics pipelines also export
to the demo's own OTLP receiver (and its logs exporter, Loki's in the stack, points
there), so the demo prints what went through the collector as it does without one.

A component that is not built or installed is skipped with a note saying how to get
it; the rest still runs. Without the collector nothing would reach Prometheus or
Jaeger, so they are skipped too and the service exports straight to the demo's
receiver, as in the default mode. ``tests/test_monitoring_stack.py`` finds the
binaries and sets the ports with the functions here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _collector import Span

__all__ = [
    "Stack",
    "collector_env",
    "free_port",
    "jaeger_binary",
    "jaeger_env",
    "jaeger_spans",
    "otelcol_binary",
    "prometheus_binary",
]

COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"
DEMO_EXPORTER = "otlp_http/demo"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- binaries


def _cache_root() -> Path:
    return Path(
        os.environ.get("PLATFORM_OTEL_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "platform-otel"
    )


def otelcol_binary() -> Path | None:
    """``$PLATFORM_OTEL_OTELCOL``, else ``collector/build.sh``'s cache entry for this manifest."""
    given = os.environ.get("PLATFORM_OTEL_OTELCOL")
    if given:
        return Path(given)
    digest = hashlib.sha256((COLLECTOR_DIR / "manifest.yaml").read_bytes()).hexdigest()
    path = _cache_root() / f"otelcol-{digest}" / "otelcol-platform"
    return path if path.is_file() else None


def jaeger_binary() -> Path | None:
    """``$PLATFORM_OTEL_JAEGER``, else ``collector/jaeger/build.sh``'s cache entry."""
    given = os.environ.get("PLATFORM_OTEL_JAEGER")
    if given:
        return Path(given)
    gomod = (COLLECTOR_DIR / "jaeger" / "go.mod").read_text(encoding="utf-8")
    version = re.search(r"github.com/jaegertracing/jaeger (v[\d.]+)", gomod)
    if version is None:
        return None
    path = _cache_root() / f"jaeger-{version.group(1)}" / "jaeger"
    return path if path.is_file() else None


def prometheus_binary() -> str | None:
    """``$PLATFORM_OTEL_PROMETHEUS``, else ``prometheus`` on the ``PATH``."""
    return os.environ.get("PLATFORM_OTEL_PROMETHEUS") or shutil.which("prometheus")


# --------------------------------------------------------------------------- configuration


def collector_env(
    storage: Path, traces_endpoint: str, logs_endpoint: str
) -> tuple[dict[str, str], dict[str, int]]:
    """The variables that move every endpoint of ``collector/config.yaml`` to a free port.

    ``traces_endpoint`` (host:port, OTLP gRPC) takes Tempo's place, ``logs_endpoint``
    (OTLP/HTTP base URL) Loki's. Quick flushes, so data shows within a second.
    """
    ports = {name: free_port() for name in ("grpc", "http", "health", "prometheus", "telemetry")}
    env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports['prometheus']}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
        "OTELCOL_STORAGE_DIR": str(storage),
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        "OTELCOL_BATCH_TIMEOUT": "200ms",
        "TEMPO_ENDPOINT": traces_endpoint,
        "LOKI_ENDPOINT": logs_endpoint,
    }
    return env, ports


def jaeger_env() -> tuple[dict[str, str], dict[str, int]]:
    """The variables that move every endpoint of ``collector/jaeger/config.yaml`` to a free port."""
    ports = {
        name: free_port() for name in ("grpc", "http", "query", "query_grpc", "health", "telemetry")
    }
    env = {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports['query']}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports['query_grpc']}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "JAEGER_TELEMETRY_HOST": "127.0.0.1",
        "JAEGER_TELEMETRY_PORT": str(ports["telemetry"]),
        "JAEGER_BATCH_TIMEOUT": "100ms",
    }
    return env, ports


def _collector_config(workdir: Path, demo_receiver: str, with_trace_store: bool) -> Path:
    """``collector/config.yaml``, its traces and metrics also exported to the demo's receiver."""
    import yaml  # pyyaml: scripts/demo.sh installs it

    config = yaml.safe_load((COLLECTOR_DIR / "config.yaml").read_text(encoding="utf-8"))
    config["exporters"][DEMO_EXPORTER] = {"endpoint": demo_receiver, "compression": "gzip"}
    pipelines = config["service"]["pipelines"]
    for name in ("traces", "metrics"):
        pipelines[name]["exporters"].append(DEMO_EXPORTER)
    if not with_trace_store:  # no Jaeger: nothing where Tempo's exporter would send
        pipelines["traces"]["exporters"].remove("otlp_grpc/tempo")
        del config["exporters"]["otlp_grpc/tempo"]
    path = workdir / "otelcol.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _prometheus_config(workdir: Path, targets: dict[str, str]) -> Path:
    """``collector/prometheus/prometheus.yml``: the collector's jobs only, scraped every second."""
    import yaml

    text = (COLLECTOR_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    text = re.sub(r"(scrape_interval|evaluation_interval): \d+s", r"\1: 1s", text)
    config = yaml.safe_load(text)
    jobs = []
    for job in config["scrape_configs"]:
        static = job.get("static_configs", [])
        wanted = [t for s in static for t in s["targets"]]
        if wanted and all(t in targets for t in wanted):  # only what runs here
            for s in static:
                s["targets"] = [targets[t] for t in s["targets"]]
            jobs.append(job)
    config["scrape_configs"] = jobs
    shutil.copy(COLLECTOR_DIR / "prometheus" / "alerts.yaml", workdir / "alerts.yaml")
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- processes


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (each component flushes and exits), then SIGKILL to its whole group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Stack:
    """Start with :meth:`start`; always :meth:`stop` (also on Ctrl-C)."""

    demo_receiver: str  # the demo's own OTLP/HTTP receiver, http://127.0.0.1:<port>
    notes: list[str] = field(default_factory=list)
    otlp_endpoint: str | None = None  # where the service sends OTLP/HTTP: the collector
    prometheus_url: str | None = None
    jaeger_url: str | None = None  # Jaeger's query API and (placeholder) UI
    workdir: Path | None = None
    processes: list[_Process] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> Stack:
        otelcol, jaeger, prometheus = otelcol_binary(), jaeger_binary(), prometheus_binary()
        if otelcol is None or not os.access(otelcol, os.X_OK):
            self.notes.append(
                f"collector: not built ({otelcol or 'no cached binary'}): run"
                " `bash collector/build.sh` (needs Go) or set PLATFORM_OTEL_OTELCOL."
                " Prometheus and Jaeger are not started either (nothing would reach them);"
                " the service exports to the demo's receiver only"
            )
            return self
        try:
            import yaml  # noqa: F401 - the configs are rewritten with it
        except ImportError:
            self.notes.append(
                "collector, Prometheus, Jaeger: their configs are adapted with PyYAML:"
                " `pip install pyyaml` (scripts/demo.sh installs it)"
            )
            return self
        self.workdir = Path(tempfile.mkdtemp(prefix="platform-otel-demo-"))
        traces_endpoint = ""
        if jaeger is None or not os.access(jaeger, os.X_OK):
            self.notes.append(
                f"Jaeger: not built ({jaeger or 'no cached binary'}): run"
                " `bash collector/jaeger/build.sh` (needs Go) or set PLATFORM_OTEL_JAEGER;"
                " traces go to the demo's receiver only"
            )
        else:
            env, ports = jaeger_env()
            config = COLLECTOR_DIR / "jaeger" / "config.yaml"
            self._run("jaeger", [str(jaeger), "--config", str(config)], env)
            self._wait_ready(f"http://127.0.0.1:{ports['health']}/status", timeout)
            self.jaeger_url = f"http://127.0.0.1:{ports['query']}"
            traces_endpoint = f"127.0.0.1:{ports['grpc']}"

        env, ports = collector_env(
            self.workdir / "otelcol-queue", traces_endpoint, self.demo_receiver
        )
        config = _collector_config(self.workdir, self.demo_receiver, bool(traces_endpoint))
        self._run("collector", [str(otelcol), "--config", str(config)], env)
        self._wait_ready(f"http://127.0.0.1:{ports['health']}/", timeout)
        self.otlp_endpoint = f"http://127.0.0.1:{ports['http']}"

        if prometheus is None or not os.access(prometheus, os.X_OK):
            self.notes.append(
                f"Prometheus: not installed ({prometheus or 'not on the PATH'}):"
                " `apt-get install prometheus` (Debian's package has"
                " the classic web UI) or set PLATFORM_OTEL_PROMETHEUS; metrics reach the"
                " collector's endpoint and the demo's receiver only"
            )
            return self
        config = _prometheus_config(
            self.workdir,
            {
                "otel-collector:8889": f"127.0.0.1:{ports['prometheus']}",
                "otel-collector:8888": f"127.0.0.1:{ports['telemetry']}",
            },
        )
        port = free_port()
        argv = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ]
        self._run("prometheus", argv, {})
        self._wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout)
        self.prometheus_url = f"http://127.0.0.1:{port}"
        return self

    def _run(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops them in order
            )
        self.processes.append(_Process(name, proc, log))

    def _wait_ready(self, url: str, timeout: float) -> None:
        """Until ``url`` answers 200; a clear error (with the log's tail) if the process died."""
        process = self.processes[-1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                if _get(url, 1.0)[0] == 200:
                    return
            time.sleep(0.1)
        tail = process.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{process.name} did not become ready ({url}):\n{tail}")

    def stop(self) -> list[str]:
        """Stop every process (the collector first: it flushes to the others), remove the folder.

        Returns the names of the processes stopped, in order.
        """
        order = {"collector": 0, "prometheus": 1, "jaeger": 2}
        stopped = sorted(self.processes, key=lambda p: order.get(p.name, 3))
        for process in stopped:
            process.stop()
        self.processes.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return [p.name for p in stopped]

    def prometheus_graph(self, expr: str) -> str:
        """The classic web UI's graph page of ``expr`` over the last 5 minutes."""
        query = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "5m"})
        return f"{self.prometheus_url}/classic/graph?{query}"

    def prometheus_has_data(self, expr: str) -> bool:
        assert self.prometheus_url is not None
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with contextlib.suppress(OSError, ValueError):
            status, body = _get(url, 5.0)
            result = json.loads(body)["data"]["result"] if status == 200 else []
            return any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result)
        return False

    def jaeger_trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace from Jaeger's query API (``/api/traces/<id>``), or None while it is not there."""
        assert self.jaeger_url is not None
        with contextlib.suppress(OSError, ValueError):
            status, body = _get(f"{self.jaeger_url}/api/traces/{trace_id}", 5.0)
            data = json.loads(body).get("data") if status == 200 else None
            if data:
                trace: dict[str, Any] = data[0]
                return trace
        return None


def jaeger_spans(trace: dict[str, Any]) -> list[Span]:
    """A trace from Jaeger's API as the demo's spans (``check_trace`` and ``print_tree`` take them)."""
    out = []
    for span in trace["spans"]:
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        start_ns = int(span["startTime"]) * 1000  # Jaeger: microseconds
        out.append(
            Span(
                name=span["operationName"],
                service=trace["processes"][span["processID"]]["serviceName"],
                kind=str(tags.get("span.kind", "internal")).upper(),
                trace_id=span["traceID"],
                span_id=span["spanID"],
                parent_span_id=parents[0] if parents else "",
                start_ns=start_ns,
                end_ns=start_ns + int(span["duration"]) * 1000,
                status_code=2 if tags.get("error") is True else 0,
                attributes=tags,
            )
        )
    return out
