"""What the examples really emit, collected at a real OTLP receiver (tests/test_telemetry_names.py).

:func:`collect` runs every ``examples/<name>/run.py`` and the API tour
(``tests/support/telemetry_tour.py``) as separate processes exporting over OTLP/gRPC
to one :class:`OtlpReceiver`, with the test suite's stand-in ``pynvml`` on
``PYTHONPATH`` (no GPU here: the GPU names come from the stand-in NVML, never from
a real driver). ``examples/doc_pipeline`` is collected by its own demo
(``run_demo.py --json``, the ``demo_summary`` fixture).

:func:`collector_rendering` replays the metric and trace export requests that
arrived into the real collector binary (``collector/config.yaml``) and returns the
sample names its prometheus exporter serves: the Prometheus rendering the
reference documents, taken from the real exporter instead of typed-in rules.

Names an example application defines itself are not platform-otel's: by the
examples' convention they use instrumentation scopes starting with ``example.``
(the test programs here ``tests.``) and attribute / log ``extra=`` keys starting
with ``app.``; :data:`APP_SCOPE_PREFIXES` and :data:`APP_KEY_PREFIX` drop them.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.support.fixtures import (
    REPO_ROOT,
    child_env,
    free_port,
    http_get,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver

__all__ = [
    "APP_KEY_PREFIX",
    "APP_SCOPE_PREFIXES",
    "Emitted",
    "Run",
    "collect",
    "collector_rendering",
    "example_scripts",
    "sample_names",
]

APP_SCOPE_PREFIXES = ("example.", "tests.")
APP_KEY_PREFIX = "app."
TOUR = REPO_ROOT / "tests" / "support" / "telemetry_tour.py"
TOUR_SERVICE = "telemetry-tour"
# Configurations the tour runs under (docs/configuration.md): header capture, content
# capture, a fast /api/ps poll.
TOUR_ENV = {
    "OTEL_SERVICE_NAME": TOUR_SERVICE,
    "PLATFORM_OTEL_CAPTURE_CONTENT": "true",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-request-tag,authorization",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "content-type",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization",
    "PLATFORM_OTEL_PROMETHEUS_HOST": "127.0.0.1",
    "PLATFORM_OTEL_OLLAMA_PS_INTERVAL": "0.2",
}


def example_scripts() -> list[Path]:
    """Every ``examples/<name>/run.py`` (the convention: exit 0 within 60 s, no GPU/Ollama/collector)."""
    return sorted((REPO_ROOT / "examples").glob("*/run.py"))


@dataclass
class Run:
    """One finished program: what it printed and how long it took."""

    name: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.name}: rc={self.rc} after {self.seconds:.1f}s\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


@dataclass
class Emitted:
    """Every name that arrived, platform-otel's only (application-defined names dropped)."""

    runs: list[Run]
    span_names: set[tuple[str, tuple[tuple[str, Any], ...]]] = field(default_factory=set)
    span_attributes: set[str] = field(
        default_factory=set
    )  # span attributes, events, event attributes
    metrics: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (instrument, unit)
    metric_attributes: dict[str, set[str]] = field(default_factory=dict)  # per metric
    log_attributes: set[str] = field(default_factory=set)
    resource_attributes: set[str] = field(default_factory=set)
    tour_metrics: set[str] = field(default_factory=set)  # exported by the tour's own process
    in_process_prometheus: set[str] = field(default_factory=set)  # the tour's /metrics
    requests: list[tuple[str, Any]] = field(default_factory=list)  # ("metrics"|"traces", request)

    @property
    def names(self) -> set[str]:
        """Every attribute, event and metric name (span names are patterns: see span_names)."""
        return (
            self.span_attributes
            | set(self.metrics)
            | {a for names in self.metric_attributes.values() for a in names}
            | self.log_attributes
            | self.resource_attributes
        )


def _is_app(scope: str) -> bool:
    return scope.startswith(APP_SCOPE_PREFIXES)


def _platform_keys(keys: Iterable[str]) -> set[str]:
    return {k for k in keys if not k.startswith(APP_KEY_PREFIX)}


def _run(name: str, argv: list[str], env: dict[str, str], timeout: float) -> Run:
    start = time.monotonic()
    proc = subprocess.run(
        argv, env=child_env(env), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    return Run(name, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def collect(receiver: OtlpReceiver, gpu_env: dict[str, str], tour_env: dict[str, str]) -> Emitted:
    """Run the examples and the tour, all at once, into ``receiver``.

    ``gpu_env`` (the stand-in NVML) is the examples' environment; ``tour_env`` adds the
    tour's (its stand-in NVML, the data-store servers).
    """
    common = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        # No real Ollama: the examples fall back to the simulated one.
        "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
    }
    # The examples take the SDK path, with the SDK's own metrics on; the tour and the demo
    # the default fast path (tests/test_fast_parity.py holds the two to the same output).
    sdk_path = {
        "PLATFORM_OTEL_OTLP_ENCODER": "official",
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true",
    }
    jobs = [
        (
            f"examples/{p.parent.name}",
            [sys.executable, str(p)],
            {**common, **sdk_path, **gpu_env},
            60.0,
        )
        for p in example_scripts()
    ]
    env = {**common, **tour_env, **TOUR_ENV, "PLATFORM_OTEL_PROMETHEUS_PORT": str(free_port())}
    jobs.append(("telemetry_tour", [sys.executable, str(TOUR)], env, 60.0))
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda job: _run(*job), jobs))
    emitted = Emitted(runs)
    for run in runs:
        for line in run.stdout.splitlines():
            if line.startswith("INPROCESS "):
                emitted.in_process_prometheus = set(json.loads(line[len("INPROCESS ") :]))
    for span in receiver.spans():
        emitted.resource_attributes.update(span.resource)
        if _is_app(span.scope):
            continue
        attributes = {k: v for k, v in span.attributes.items() if not k.startswith(APP_KEY_PREFIX)}
        emitted.span_names.add(
            (span.name, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        )
        emitted.span_attributes.update(attributes)
        for event in span.events:
            emitted.span_attributes.add(event["name"])
            emitted.span_attributes.update(_platform_keys(event["attributes"]))
    for point in receiver.metrics():
        emitted.resource_attributes.update(point.resource)
        if _is_app(point.scope):
            continue
        emitted.metrics[point.name] = (_instrument(point), point.unit)
        emitted.metric_attributes.setdefault(point.name, set()).update(
            _platform_keys(point.attributes)
        )
        if point.resource.get("service.name") == TOUR_SERVICE:
            emitted.tour_metrics.add(point.name)
    for record in receiver.logs():
        emitted.resource_attributes.update(record.resource)
        emitted.log_attributes.update(_platform_keys(record.attributes))
    emitted.requests = [("metrics", r.request) for r in receiver.requests("metrics")]
    emitted.requests += [("traces", r.request) for r in receiver.requests("traces")]
    return emitted


def _instrument(point: Any) -> str:
    """The instrument kind an OTLP point shows: histogram, counter, updowncounter or gauge."""
    if point.type == "sum":
        return "counter" if point.is_monotonic else "updowncounter"
    return str(point.type)


def sample_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"(?m)^([a-zA-Z_:][\w:]*)[{ ]", text)}


def collector_rendering(otelcol: Path, requests: list[tuple[str, Any]], workdir: Path) -> str:
    """What the real collector (collector/config.yaml) serves to Prometheus for ``requests``.

    The requests are replayed over OTLP/gRPC; the traces feed its span_metrics
    connector (``traces_span_metrics_*``). Polls until the served set stops growing.
    """
    from tests.test_collector import CONFIG, collector_env

    sinks = [OtlpReceiver("grpc").start(), OtlpReceiver("http").start()]  # Tempo's and Loki's
    try:
        env, ports = collector_env(workdir, sinks[0].port, sinks[1].endpoint)
        with start_process([str(otelcol), "--config", str(CONFIG)], env) as collector:
            wait_http(f"http://127.0.0.1:{ports.health}/", collector, timeout=20)
            with grpc.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
                stubs = {
                    "metrics": metrics_service_pb2_grpc.MetricsServiceStub(channel),
                    "traces": trace_service_pb2_grpc.TraceServiceStub(channel),
                }
                for signal, request in requests:
                    # wait_for_ready: the health endpoint can answer before the receiver listens.
                    stubs[signal].Export(request, timeout=20, wait_for_ready=True)
            url = f"http://127.0.0.1:{ports.prometheus}/metrics"
            names: set[str] = set()
            deadline = time.monotonic() + 15
            while True:
                status, body = http_get(url)
                assert status == 200, body
                found = sample_names(body)
                settled = found == names and any(n.startswith("traces_span") for n in found)
                if settled or time.monotonic() > deadline:
                    return body
                names = found
                time.sleep(1.5)  # the span_metrics flush interval is 1 s here
    finally:
        for sink in sinks:
            sink.stop()
