"""Pytest fixtures and helpers for integration tests: real OTLP receivers and subprocesses.

Integration tests run ``platform_otel.init()`` in a fresh interpreter (the global
providers can be set only once per process) with a controlled environment:
every ``OTEL_*`` / ``PLATFORM_OTEL_*`` variable of the test runner is removed,
then the test's own variables are applied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pytest

from tests.support.otlp_receiver import OtlpReceiver

__all__ = [
    "REPO_ROOT",
    "Completed",
    "RunPython",
    "Server",
    "child_env",
    "demo_summary",
    "free_port",
    "http_get",
    "otel_env",
    "otlp_grpc_receiver",
    "otlp_http_receiver",
    "run_python",
    "start_process",
    "wait_http",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_SRC = REPO_ROOT / "src"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process: runner's env without OTEL_*/PLATFORM_OTEL_*, plus ``env``.

    ``src`` and the repository root are put on ``PYTHONPATH`` so the package and
    ``tests.support`` import whether or not the package is installed.
    """
    out = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PLATFORM_OTEL_"))}
    extra_path = [str(_SRC), str(REPO_ROOT)]
    if out.get("PYTHONPATH"):
        extra_path.append(out["PYTHONPATH"])
    out["PYTHONPATH"] = os.pathsep.join(extra_path)
    out["PYTHONUNBUFFERED"] = "1"
    out.pop("PYTEST_CURRENT_TEST", None)
    out.update(env or {})
    return {k: v for k, v in out.items() if v is not None}


def otel_env(
    receiver: OtlpReceiver | None = None,
    *,
    service_name: str = "itest",
    fast: bool = True,
    **extra: str,
) -> dict[str, str]:
    """``OTEL_*`` variables pointing the child's ``init()`` at ``receiver``.

    ``fast`` shortens batch delays and the metric interval so data arrives while
    the process runs, not only at exit.
    """
    env: dict[str, str] = {"OTEL_SERVICE_NAME": service_name}
    if receiver is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = (
            "grpc" if receiver.protocol == "grpc" else "http/protobuf"
        )
    if fast:
        env.update(
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_BLRP_SCHEDULE_DELAY="100",
            OTEL_METRIC_EXPORT_INTERVAL="300",
        )
    env.update(extra)
    return env


@dataclass
class Completed:
    """Result of :func:`run_python`."""

    rc: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    ended_at: float = 0.0  # time.time() when the process had exited

    def __str__(self) -> str:  # shown by pytest in assertion messages
        return (
            f"rc={self.rc} duration={self.duration:.2f}s timed_out={self.timed_out}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class RunPython(Protocol):
    def __call__(
        self,
        code: str,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 20.0,
        args: Sequence[str] = (),
        cwd: str | os.PathLike[str] | None = None,
    ) -> Completed: ...


def run_python(
    code: str,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = 20.0,
    args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> Completed:
    """Run ``code`` (dedented) in a fresh interpreter; never hangs longer than ``timeout``."""
    with tempfile.TemporaryDirectory(prefix="potel-run-") as tmp:
        script = Path(tmp) / "app_script.py"
        script.write_text(textwrap.dedent(code), encoding="utf-8")
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=child_env(env),
            cwd=cwd or tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            timed_out = True
        return Completed(
            proc.returncode, out, err, time.monotonic() - start, timed_out, time.time()
        )


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class _Collector:
    """Drains a pipe in a thread so a chatty server never blocks on a full pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@dataclass
class Server:
    """A long-running child process (gunicorn, uvicorn) started by :func:`start_process`."""

    proc: subprocess.Popen[str]
    _out: _Collector
    _err: _Collector
    exit_duration: float | None = None
    returncode: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self._out.text

    @property
    def stderr(self) -> str:
        return self._err.text

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process (graceful), wait, then kill its whole group; return the exit code."""
        if self.returncode is None:
            start = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
            self.exit_duration = time.monotonic() - start
            _kill_group(self.proc)  # stray workers, if any
            self.returncode = self.proc.wait(5)
            self._out.join(5)
            self._err.join(5)
        return self.returncode

    def __str__(self) -> str:
        return f"pid={self.pid} rc={self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@contextlib.contextmanager
def start_process(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[Server]:
    """Start ``argv`` in its own process group; always stopped (SIGTERM, then SIGKILL) on exit."""
    proc = subprocess.Popen(
        list(argv),
        env=child_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    server = Server(proc, _Collector(proc.stdout), _Collector(proc.stderr))
    try:
        yield server
    finally:
        server.stop()


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    """GET ``url`` on a fresh connection; return (status, body)."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def wait_http(url: str, server: Server | None = None, timeout: float = 15.0) -> None:
    """Wait until ``url`` answers (any status); fail early if ``server`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.proc.poll() is not None:
            server.stop()
            raise AssertionError(f"server exited before answering {url}:\n{server}")
        try:
            http_get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(
        f"{url} did not answer within {timeout}s" + (f"\n{server}" if server else "")
    )


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/gRPC receiver on a free 127.0.0.1 port."""
    receiver = OtlpReceiver("grpc").start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def otlp_http_receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP (protobuf) receiver on a free 127.0.0.1 port."""
    receiver = OtlpReceiver("http").start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(name="run_python")
def run_python_fixture() -> RunPython:
    """Run a Python snippet in a subprocess: ``run_python(code, env) -> Completed``."""
    return run_python


@pytest.fixture(scope="session")
def demo_summary() -> dict[str, Any]:
    """One run of the flagship demo (``run_demo.py --json``), shared by every test that reads it."""

    pytest.importorskip("fastapi", reason="the example is a FastAPI service")
    pytest.importorskip("uvicorn", reason="the example is served by uvicorn")
    return run_demo()


def run_demo(*args: str) -> dict[str, Any]:
    """Run ``run_demo.py --json --timeout 60 *args``; its SUMMARY line, after asserting exit 0."""
    import json

    demo = REPO_ROOT / "examples" / "doc_pipeline" / "run_demo.py"
    proc = subprocess.run(
        [sys.executable, str(demo), "--json", *args, "--timeout", "60"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=110,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return dict(json.loads(lines[-1][len("SUMMARY ") :]))


def doctor_report(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``platform-otel doctor --json`` in a fresh interpreter (``child_env(env)``): its report."""
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "platform_otel._cli", "doctor", "--json"],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return dict(json.loads(proc.stdout))


def fast_path_problems() -> list[str]:
    """Why the installed OpenTelemetry SDK cannot run the fast path ([] when it can)."""
    from platform_otel import _otel_private

    return _otel_private.check()


#: Tests of the fast path's own objects: skipped where the installed SDK turns it off
#: (then nothing runs that code; the lowest declared versions, docs/versions.md).
requires_fast_path = pytest.mark.skipif(
    bool(fast_path_problems()), reason="the fast path is off on this OpenTelemetry SDK"
)
