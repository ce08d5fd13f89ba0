"""Shared helpers for the benchmark modules: processes, load generation, statistics.

Every process a benchmark starts is stopped by it (``with`` blocks); servers bind
127.0.0.1 on free ports. Load comes from ``wrk`` (``apt-get install wrk``) when
installed, else from a small asyncio HTTP/1.1 keep-alive client run in its own
process (slower than wrk: absolute numbers are lower, ratios stay comparable).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "PYTHON",
    "REPO",
    "Load",
    "OpenLoad",
    "Server",
    "Sink",
    "free_port",
    "load",
    "median",
    "open_loop",
    "row",
    "rss_kib",
    "server",
    "sink",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def row(
    benchmark: str,
    case: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    higher_is_better: bool = True,
    target: str = "",
    ok: bool | None = None,
    notes: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One result row; ``ratio`` is value / baseline measured in the same run."""
    ratio = (value / baseline) if baseline else None
    return {
        "benchmark": benchmark,
        "case": case,
        "value": round(value, 4) if isinstance(value, float) else value,
        "unit": unit,
        "ratio": round(ratio, 4) if ratio is not None else None,
        "higher_is_better": higher_is_better,
        "target": target,
        "ok": ok,
        "notes": notes,
        **extra,
    }


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: repo importable, no test-only switches."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("OTEL_", "PLATFORM_OTEL_")):
            del env[key]
    paths = [str(REPO / "src"), str(BENCH_DIR / "apps"), str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a live process in KiB, from /proc."""
    cur = peak = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak


def _stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- OTLP sink


@dataclass
class Sink:
    proc: subprocess.Popen[str]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, Any]:
        """What the sink received so far (requests and bytes per signal)."""
        import json

        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(20):  # skip any other line the sink printed (e.g. a gRPC warning)
            line = self.proc.stdout.readline()
            if line.startswith("COUNTS "):
                return json.loads(line[len("COUNTS ") :])  # type: ignore[no-any-return]
            if not line:
                break
        return {}

    def stop(self) -> dict[str, Any]:
        """Stop the sink; returns what it counted (requests and bytes per signal)."""
        _stop(self.proc)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        match = re.search(r"^COUNTS (.*)$", out, re.M)
        import json

        return json.loads(match.group(1)) if match else {}


def start_sink(port: int = 0) -> Sink:
    proc = subprocess.Popen(
        _pinned([PYTHON, str(BENCH_DIR / "_otlp_sink.py"), "--port", str(port)], "sink"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=bench_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"PORT (\d+)", line)
    if not match:
        _stop(proc)
        raise RuntimeError(f"OTLP sink did not start: {line!r}")
    return Sink(proc, int(match.group(1)))


@contextlib.contextmanager
def sink() -> Iterator[Sink]:
    s = start_sink()
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.stop()


# ---------------------------------------------------------------- uvicorn server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def otlp_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "bench-hello",
    }


@contextlib.contextmanager
def server(
    mode: str,
    endpoint: str,
    *,
    access_log: bool = True,
    official_wrapper: bool = False,
    log_path: Path | None = None,
    extra_path: Path | None = None,
    prefix: Sequence[str] = (),
    env_extra: dict[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[Server]:
    """Run ``benchmarks/apps/hello.py`` under one uvicorn worker in the given mode.

    ``extra_path`` goes first on the server's ``PYTHONPATH`` (``standard_server_deps``);
    ``prefix`` runs the worker under another program (valgrind: ``instructions.py``).
    """
    port = free_port()
    cmd = [
        *prefix,
        str(_BIN / "uvicorn"),
        "hello:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if not access_log:
        cmd.append("--no-access-log")
    env = bench_env(BENCH_MODE=mode, **otlp_env(endpoint))
    env.update(env_extra or {})
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env["PYTHONPATH"]])
    cmd = _pinned(cmd, "server")
    if official_wrapper:
        cmd = [str(_BIN / "opentelemetry-instrument"), *cmd]
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
            OTEL_PYTHON_LOG_CORRELATION="true",
        )
    out = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        _wait_ready(proc, port, ready_timeout)
        yield Server(proc, port)
    finally:
        _stop(proc)
        out.close()


STANDARD_DEPS = ("httptools", "uvloop")  # what ``uvicorn[standard]`` adds for HTTP/1.1 and the loop


def standard_server_deps() -> Path | None:
    """A directory holding ``httptools`` and ``uvloop`` (``uvicorn[standard]``'s fast HTTP
    parser and event loop), installed once with pip into ``benchmarks/.cache``; ``None``
    when they cannot be installed. Kept out of the project's environment on purpose:
    with them importable, every uvicorn in the test suite would switch parser and loop.
    """
    target = BENCH_DIR / ".cache" / f"uvicorn-standard-py{sys.version_info[0]}{sys.version_info[1]}"
    if all((target / name).is_dir() for name in STANDARD_DEPS):
        return target
    try:
        done = subprocess.run(
            [PYTHON, "-m", "pip", "install", "--quiet", "--target", str(target), *STANDARD_DEPS],
            capture_output=True,
            text=True,
            timeout=300,  # an unreachable package index must not hang a benchmark run
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0 or not all((target / name).is_dir() for name in STANDARD_DEPS):
        return None
    return target


def _wait_ready(proc: subprocess.Popen[Any], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if s.recv(16).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


# ---------------------------------------------------------------- load generation


@dataclass
class Load:
    rps: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _pinned(cmd: list[str], role: str) -> list[str]:
    """With BENCH_PIN=1 (and 2+ CPUs): the server on CPU 1, load generator and sink on CPU 0.

    Less noise between runs: the server never shares its core with wrk, so its CPU
    per request is not disturbed by the load generator's scheduling.
    """
    if (
        os.environ.get("BENCH_PIN") != "1"
        or (os.cpu_count() or 1) < 2
        or not shutil.which("taskset")
    ):
        return cmd
    return ["taskset", "-c", "1" if role == "server" else "0", *cmd]


def _wrk(url: str, seconds: float, connections: int) -> Load:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url]
    cmd = _pinned(cmd, "load")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    err = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if err:
        errors += int(err.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return Load(rps, p99, total, errors)


def _python_load(url: str, seconds: float, connections: int) -> Load:
    cmd = [PYTHON, str(BENCH_DIR / "_loadgen.py"), url, str(seconds), str(connections)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps, p99, total, errors = out.split()
    return Load(float(rps), float(p99), int(total), int(errors))


def load(url: str, seconds: float, connections: int = 32) -> Load:
    """Drive ``url`` for ``seconds`` with keep-alive connections; wrk if installed."""
    if shutil.which("wrk"):
        return _wrk(url, seconds, connections)
    return _python_load(url, seconds, connections)


@dataclass
class OpenLoad:
    """An open-loop run (``_openloop.py``): latencies counted from each request's scheduled time."""

    target_rate: float
    rate: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    answered: int
    errors: int
    late: int
    unfinished: int
    queued: int
    gen_lag_p99_ms: float


def open_loop(
    url: str,
    seconds: float,
    rate: float,
    connections: int = 256,
    drain: float = 2.0,
    warmup: float = 0.0,
) -> OpenLoad:
    """Send GETs to ``url`` at a fixed ``rate`` for ``seconds`` (``benchmarks/_openloop.py``,
    its own process); a server that falls behind is measured by how long requests wait."""
    import json

    cmd = [PYTHON, str(BENCH_DIR / "_openloop.py"), url, str(seconds), str(rate)]
    cmd = [*cmd, str(connections), "--drain", str(drain), "--warmup", str(warmup)]
    cmd = _pinned(cmd, "load")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = json.loads(out)
    return OpenLoad(**{k: res[k] for k in OpenLoad.__dataclass_fields__})


def host_info() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_generator": "wrk"
        if shutil.which("wrk")
        else "python asyncio (benchmarks/_loadgen.py)",
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return info
