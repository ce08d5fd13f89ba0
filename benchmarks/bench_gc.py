"""Garbage collections per 1,000 requests in a uvicorn worker under load.

Why a benchmark of its own: telemetry objects that outlive their request make
the garbage collector run more often, and its full collections scan the whole
heap (tens of ms in a FastAPI worker, a p99 outlier each time). That cost hides
in throughput noise, but the collection counts are exact. The case that found it:
uvicorn schedules its keep-alive timer inside the response's last ``send`` and a
timer keeps a copy of the current context, so with the request's span current
there every span stayed alive in cancelled timers (docs/performance.md, "Garbage
the server kept alive").

Counts come from ``gc.callbacks`` inside the worker (``BENCH_GC_STATS`` in
``apps/hello.py``), read before and after the measured load.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load, row, server, sink

__all__ = ["run"]

CASES = [("uninstrumented", "none"), ("platform_otel.init()", "platform")]


def _read(path: Path) -> dict[str, list[float]]:
    for _ in range(50):
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            time.sleep(0.1)
    raise RuntimeError(f"no GC statistics from the worker in {path}")


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 3.0 if quick else 8.0
    rows: list[dict[str, Any]] = []
    with sink() as s, tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, mode in CASES:
            path = Path(tmp) / f"gc-{mode}.json"
            os.environ["BENCH_GC_STATS"] = str(path)
            try:
                with server(mode, s.endpoint, access_log=True) as srv:
                    load(srv.url, 1.0)  # warm-up
                    time.sleep(0.5)
                    before = _read(path)
                    result = load(srv.url, seconds)
                    time.sleep(0.5)
                    after = _read(path)
            finally:
                del os.environ["BENCH_GC_STATS"]
            per_k = 1000.0 / max(result.requests, 1)
            counts = [
                (after["collections"][g] - before["collections"][g]) * per_k for g in range(3)
            ]
            ms = sum(after["seconds"][g] - before["seconds"][g] for g in range(3)) * 1000 * per_k
            results[label] = (counts, ms, result.requests)
        base_ms = results[CASES[0][0]][1]
        for label, _ in CASES:
            counts, ms, requests = results[label]
            rows.append(
                row(
                    "garbage collection per 1,000 requests (uvicorn worker, access log on)",
                    label,
                    ms,
                    "ms",
                    higher_is_better=False,
                    notes=(
                        f"collections gen0/gen1/gen2: {counts[0]:.2f} / {counts[1]:.2f} / "
                        f"{counts[2]:.3f}; uninstrumented {base_ms:.2f} ms; {requests} requests"
                    ),
                )
            )
    return rows
