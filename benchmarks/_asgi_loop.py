"""Drive ``benchmarks/apps/hello.py`` in-process through ASGI, without a server or sockets.

Usage: ``BENCH_MODE=<mode> python benchmarks/_asgi_loop.py N`` (optionally under
``opentelemetry-instrument``). Prints one JSON line: CPU microseconds per request
for the whole process (event loop *and* exporter threads, flush included) and
wall microseconds per request. Without the HTTP server's own cost, the
difference between modes is the telemetry's cost per request, far less noisy
than a throughput run on a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

__all__ = ["main"]

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk/4.1.0")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


_access_logger: Any = None


async def _send(message: dict[str, Any]) -> None:
    if _access_logger is not None and message["type"] == "http.response.start":
        # uvicorn writes its access line here, inside the app's send (the request's span is current)
        _access_logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", "/", "1.1", message["status"]
        )
    await asyncio.sleep(0)  # a socket write yields to the other connections' requests


def _flush() -> None:
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


CONCURRENCY = 32  # requests in flight, like the wrk runs' 32 connections


async def _drive(app: Any, n: int) -> None:
    """``n`` requests, ``CONCURRENCY`` at a time, interleaved at every ``send``.

    Interleaving matters: with requests in flight together, telemetry objects live
    across other requests (as in a real server), which changes the garbage
    collector's work; a strictly sequential loop under-states it.
    """

    async def connection(count: int) -> None:
        for i in range(count):
            await app(dict(_SCOPE), _receive, _send)
            if i % 8 == 7:
                # A server's event loop waits on its sockets between bursts and releases
                # the GIL there; without that the exporter threads starve, their queues
                # fill and telemetry is dropped (making instrumented cases look cheaper).
                time.sleep(0)

    await asyncio.gather(*(connection(n // CONCURRENCY) for _ in range(CONCURRENCY)))


def _configure_access_log() -> None:
    """uvicorn's own logging configuration, its access log written to /dev/null."""
    global _access_logger
    import copy
    import logging
    import logging.config

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    logging.config.dictConfig(config)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    _access_logger = logging.getLogger("uvicorn.access")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    if os.environ.get("BENCH_ACCESS_LOG") == "1":
        _configure_access_log()
    import hello

    app = hello.app
    asyncio.run(_drive(app, 1000))  # warm-up: caches, first export
    _flush()
    c0, w0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
    asyncio.run(_drive(app, n))
    w1, m1 = time.perf_counter(), time.thread_time()
    _flush()
    c1 = time.process_time()
    print(json.dumps({"mode": os.environ.get("BENCH_MODE", "none"), "n": n,
                      "cpu_us": 1e6 * (c1 - c0) / n, "wall_us": 1e6 * (w1 - w0) / n,
                      "main_thread_cpu_us": 1e6 * (m1 - m0) / n}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
