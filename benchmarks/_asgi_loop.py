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


async def _send(message: dict[str, Any]) -> None:
    return None


def _flush() -> None:
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


async def _drive(app: Any, n: int) -> None:
    for _ in range(n):
        await app(dict(_SCOPE), _receive, _send)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    import hello

    app = hello.app
    asyncio.run(_drive(app, 1000))  # warm-up: caches, first export
    _flush()
    c0, w0 = time.process_time(), time.perf_counter()
    asyncio.run(_drive(app, n))
    w1 = time.perf_counter()
    _flush()
    c1 = time.process_time()
    print(json.dumps({"mode": os.environ.get("BENCH_MODE", "none"), "n": n,
                      "cpu_us": 1e6 * (c1 - c0) / n, "wall_us": 1e6 * (w1 - w0) / n}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
