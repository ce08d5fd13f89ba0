"""Fork safety with real servers: every worker exports its own telemetry, identity and metric state.

gunicorn (UvicornWorker, with and without ``--preload``), ``uvicorn --workers``
and ``multiprocessing`` (fork) each run a small app that calls
``platform_otel.init()``; a real OTLP receiver collects what every process sends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.fixtures import (
    Server,
    free_port,
    http_get,
    otel_env,
    run_python,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARENT_COUNT = 1000  # added by the pre-fork parent; no child may ever report it

APP = f"""
import faulthandler, logging, os, signal, time
faulthandler.register(signal.SIGURG, all_threads=True)  # thread dump on demand (test diagnostics)
import platform_otel
platform_otel.init(service_name="forky")
from fastapi import FastAPI
from opentelemetry import metrics, trace

counter = metrics.get_meter("forky").create_counter("forky.hits")
if os.environ.get("PARENT_INCREMENT"):
    counter.add({PARENT_COUNT}, {{"route": "work"}})  # state created before the fork (--preload)
log = logging.getLogger("forky")
app = FastAPI()


@app.get("/work")
async def work() -> dict:
    # Block this worker's event loop briefly so concurrent requests spread over the workers.
    time.sleep(0.1)
    with trace.get_tracer("forky").start_as_current_span("forky.work"):
        counter.add(1, {{"route": "work"}})
        log.warning("handled by %s", os.getpid())
    return {{"pid": os.getpid()}}


@app.get("/pid")
def pid() -> dict:
    # A plain route that creates no span of its own: only the instrumentation's request span.
    time.sleep(0.1)
    return {{"pid": os.getpid()}}
"""


def _write_app(tmp_path: Path) -> Path:
    (tmp_path / "forky_app.py").write_text(APP, encoding="utf-8")
    return tmp_path


def _drive(url: str, workers: int, server: Server, timeout: float = 10.0) -> Counter[int]:
    """Send concurrent requests until ``workers`` distinct pids answered; return requests per pid."""
    served: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(6) as pool:
        while len(served) < workers and time.monotonic() < deadline:
            for status, body in pool.map(lambda _: http_get(url), range(6)):
                assert status == 200, f"request failed: {status} {body}\n{server}"
                served[json.loads(body)["pid"]] += 1
    assert len(served) >= workers, f"only pids {dict(served)} answered\n{server}"
    return served


def _assert_per_worker_telemetry(
    receiver: OtlpReceiver,
    served: Counter[int],
    server: Server,
    parent_pid: int | None = None,
    plain: Counter[int] | None = None,
) -> None:
    """Spans, logs and exact metric values arrive from each worker with a distinct instance id;
    ``plain``: workers that served the plain route, whose request spans must arrive too."""

    def complete(r: OtlpReceiver) -> bool:
        plain_pids = {s.resource.get("process.pid") for s in r.spans() if s.name == "GET /pid"}
        if plain is not None and not set(plain) <= plain_pids:
            return False
        span_pids = {s.resource.get("process.pid") for s in r.spans() if s.name == "forky.work"}
        log_pids = {
            lg.resource.get("process.pid") for lg in r.logs() if "handled by" in str(lg.body)
        }
        # The server span and duration histogram (platform-otel's lean FastAPI path) too.
        server_pids = {s.resource.get("process.pid") for s in r.spans() if s.name == "GET /work"}
        latest: dict[int, float] = {}
        duration_pids = set()
        for p in r.metrics():
            if p.name == "forky.hits":
                latest[p.resource["process.pid"]] = p.value  # type: ignore[assignment]
            elif (
                p.name == "http.server.request.duration"
                and p.attributes.get("http.route") == "/work"
            ):
                duration_pids.add(p.resource.get("process.pid"))
        return (
            set(served) <= span_pids
            and set(served) <= server_pids
            and set(served) <= duration_pids
            and set(served) <= log_pids
            and all(latest.get(pid) == n for pid, n in served.items())
        )

    try:
        receiver.wait_for(complete, 15)
    except AssertionError as exc:
        for pid in served:  # dump every worker's threads to its stderr: shows where export is stuck
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGURG)
        time.sleep(0.5)
        hits = [
            (p.resource.get("process.pid"), p.value)
            for p in receiver.metrics()
            if p.name == "forky.hits"
        ]
        by_signal = {
            "spans": Counter(s.resource.get("process.pid") for s in receiver.spans()),
            "logs": Counter(lg.resource.get("process.pid") for lg in receiver.logs()),
            "points": Counter(p.resource.get("process.pid") for p in receiver.metrics()),
        }
        raise AssertionError(
            f"{exc}\nserved={dict(served)} items per pid={by_signal}\n"
            f"forky.hits points={hits[-12:]}\n{server}"
        ) from None

    instance_ids: dict[int, set[str]] = {}
    for item in [*receiver.spans(), *receiver.logs(), *receiver.metrics()]:
        pid = item.resource.get("process.pid")
        instance_ids.setdefault(pid, set()).add(item.resource["service.instance.id"])
    for pid in served:
        assert len(instance_ids[pid]) == 1, (
            f"worker {pid} used several instance ids: {instance_ids}"
        )
    ids = [next(iter(instance_ids[pid])) for pid in served]
    assert len(set(ids)) == len(ids), f"workers share a service.instance.id: {instance_ids}"
    if parent_pid is not None and parent_pid in instance_ids:
        assert not instance_ids[parent_pid] & set(ids), "a worker reuses the parent's instance id"
    if parent_pid is not None:  # the parent served nothing: nothing of /work may carry its pid
        assert not any(
            s.resource.get("process.pid") == parent_pid
            for s in receiver.spans()
            if s.name == "GET /work"
        ), "a worker's server span carries the parent's resource"
    for p in receiver.metrics():
        if p.name == "forky.hits" and p.resource.get("process.pid") in served:
            assert p.value is not None and p.value < PARENT_COUNT, (
                f"worker re-exported parent state: {p}"
            )


def _gunicorn_worker_class() -> str:
    try:
        import uvicorn.workers  # noqa: F401

        return "uvicorn.workers.UvicornWorker"
    except ImportError:  # uvicorn >= 0.30 moved it to the uvicorn-worker package
        return "uvicorn_worker.UvicornWorker"


@pytest.mark.parametrize(
    ("preload", "protocol"),
    [(False, "grpc"), (True, "grpc"), (True, "http")],
    ids=["no-preload-grpc", "preload-grpc", "preload-http"],
)
def test_gunicorn_uvicorn_workers(
    preload: bool, protocol: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """gunicorn -k UvicornWorker --workers 2: each worker exports spans, logs and its own metrics under its own instance id."""
    receiver: OtlpReceiver = request.getfixturevalue(f"otlp_{protocol}_receiver")
    port = free_port()
    env = otel_env(receiver, service_name="forky")
    if preload:
        env["PARENT_INCREMENT"] = "1"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "forky_app:app",
        "-k",
        _gunicorn_worker_class(),
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(_write_app(tmp_path)),
        "--graceful-timeout",
        "5",
    ]
    if preload:
        argv.append("--preload")
    with start_process(argv, env, cwd=tmp_path) as server:
        wait_http(f"http://127.0.0.1:{port}/", server, timeout=20)  # 404, not counted
        plain = _drive(f"http://127.0.0.1:{port}/pid", 2, server)
        served = _drive(f"http://127.0.0.1:{port}/work", 2, server)
        _assert_per_worker_telemetry(receiver, served, server, parent_pid=server.pid, plain=plain)
        rc = server.stop()
    assert rc == 0, str(server)
    assert server.exit_duration is not None and server.exit_duration < 8, str(server)
    assert "Traceback" not in server.stderr, str(server)
    # gRPC's complaints when a channel or an in-flight call crosses fork()
    for symptom in ("skipping fork() handlers", "created pre fork", "Check failed"):
        assert symptom not in server.stderr, str(server)


def test_uvicorn_workers(otlp_grpc_receiver: OtlpReceiver, tmp_path: Path) -> None:
    """uvicorn --workers 2: each worker exports its own telemetry under its own instance id."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "forky_app:app",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-dir",
        str(_write_app(tmp_path)),
        "--timeout-graceful-shutdown",
        "3",
    ]
    with start_process(
        argv, otel_env(otlp_grpc_receiver, service_name="forky"), cwd=tmp_path
    ) as server:
        wait_http(f"http://127.0.0.1:{port}/", server, timeout=20)  # 404, not counted
        plain = _drive(f"http://127.0.0.1:{port}/pid", 2, server)
        served = _drive(f"http://127.0.0.1:{port}/work", 2, server)
        _assert_per_worker_telemetry(otlp_grpc_receiver, served, server, plain=plain)
        server.stop()
    assert "Traceback" not in server.stderr, str(server)


MP_APP = f"""
import logging, multiprocessing, os
import platform_otel
platform_otel.init(service_name="mp")
from opentelemetry import metrics, trace

tracer = trace.get_tracer("mp")
counter = metrics.get_meter("mp").create_counter("mp.items")
log = logging.getLogger("mp")
counter.add({PARENT_COUNT})
with tracer.start_as_current_span("parent.work"):
    log.warning("parent %s", os.getpid())


def child(n: int) -> None:
    # no flush, no sleep: multiprocessing children leave through os._exit()
    with tracer.start_as_current_span("child.work"):
        log.warning("child %s", os.getpid())
    counter.add(n)


if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(i + 1,)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
    print("PARENT", os.getpid(), "CHILDREN", *[f"{{p.pid}}:{{p.exitcode}}:{{i + 1}}" for i, p in enumerate(procs)])
"""


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multiprocessing_fork_children(protocol: str, request: pytest.FixtureRequest) -> None:
    """multiprocessing fork children export at exit, each with its own instance id and only its own counts."""
    receiver: OtlpReceiver = request.getfixturevalue(f"otlp_{protocol}_receiver")
    result = run_python(MP_APP, otel_env(receiver, fast=False, service_name="mp"), timeout=30)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    words = result.stdout.split()
    parent_pid = int(words[1])
    children = {int(pid): int(n) for pid, code, n in (w.split(":") for w in words[3:])}
    assert all(w.split(":")[1] == "0" for w in words[3:]), str(result)

    def complete(r: OtlpReceiver) -> bool:
        span_pids = {s.resource.get("process.pid") for s in r.spans() if s.name == "child.work"}
        log_pids = {
            lg.resource.get("process.pid") for lg in r.logs() if str(lg.body).startswith("child")
        }
        metric_pids = {p.resource.get("process.pid") for p in r.metrics() if p.name == "mp.items"}
        return (
            set(children) <= span_pids
            and set(children) <= log_pids
            and set(children) <= metric_pids
        )

    try:
        receiver.wait_for(complete, 10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nchildren={children}\n{result}") from None

    ids: dict[int, set[str]] = {}
    for item in [*receiver.spans(), *receiver.logs(), *receiver.metrics()]:
        ids.setdefault(item.resource["process.pid"], set()).add(
            item.resource["service.instance.id"]
        )
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(ids[p])) for p in [parent_pid, *children]}) == 3, ids
    for p in receiver.metrics():
        if p.name != "mp.items":
            continue
        pid = p.resource["process.pid"]
        expected = PARENT_COUNT if pid == parent_pid else children[pid]
        assert p.value == expected, f"pid {pid} exported {p.value}, expected {expected}"
    parent_spans = [s for s in receiver.spans() if s.name == "parent.work"]
    assert len(parent_spans) == 1, "the parent's span was exported again by a child"
