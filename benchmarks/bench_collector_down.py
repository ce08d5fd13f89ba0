"""Collector down: throughput and memory of a ``platform_otel.init()`` FastAPI app while its OTLP receiver is gone.

One uvicorn worker under wrk load throughout. Phases: receiver up (baseline),
receiver stopped for ``BENCH_DOWN_SECONDS`` (default 60; ``--quick`` uses 8),
receiver restarted on the same port (recovery). RSS is sampled after each load
chunk: "memory flat" means that, once the bounded export queues have filled
(first chunk of the outage), RSS stops growing: the drift from the first to
the last outage sample stays under 5 MiB. The
recovery row checks that the restarted receiver gets spans again.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import Load, load, median, row, rss_kib, server, start_sink

__all__ = ["run"]


def _phase(url: str, seconds: float, chunk: float, pid: int) -> tuple[Load, list[int]]:
    """Load ``url`` in chunks; aggregate throughput and RSS (KiB) after each chunk."""
    done, requests, samples, p99s = 0.0, 0, [], []
    t0 = time.perf_counter()
    while done < seconds - 0.5:
        step = min(chunk, seconds - done)
        res = load(url, step)
        requests += res.requests
        p99s.append(res.p99_ms)
        samples.append(rss_kib(pid)[0])
        done += step
    elapsed = time.perf_counter() - t0
    return Load(requests / elapsed if elapsed else 0.0, median(p99s), requests, 0), samples


def run(quick: bool) -> list[dict[str, Any]]:
    down = 8.0 if quick else float(os.environ.get("BENCH_DOWN_SECONDS", "60"))
    up = 5.0 if quick else 15.0
    chunk = 4.0 if quick else 10.0
    s = start_sink()
    port = s.port
    try:
        with server("platform", s.endpoint, access_log=True) as srv:
            pid = srv.proc.pid
            load(srv.url, 2.0)  # warm-up
            up_load, up_rss = _phase(srv.url, up, chunk, pid)
            s.stop()
            down_load, down_rss = _phase(srv.url, down, chunk, pid)
            s = start_sink(port)  # the collector comes back on the same address
            rec_load, rec_rss = _phase(srv.url, up, chunk, pid)
            time.sleep(1.0)
            received = s.counts().get("traces", {}).get("bytes", 0)
    finally:
        if s.proc.poll() is None:
            s.stop()
    ratio = down_load.rps / up_load.rps if up_load.rps else float("nan")
    fill_mib = (down_rss[0] - up_rss[-1]) / 1024.0
    drift_mib = (down_rss[-1] - down_rss[0]) / 1024.0
    bench = f"collector down {down:.0f}s (platform_otel.init(), access log on)"
    samples = ", ".join(f"{x / 1024:.1f}" for x in down_rss)
    return [
        row(bench, "receiver up", up_load.rps, "req/s", baseline=up_load.rps,
            notes=f"RSS {up_rss[-1] / 1024:.1f} MiB; p99 {up_load.p99_ms:.1f} ms"),
        row(bench, "receiver down", down_load.rps, "req/s", baseline=up_load.rps,
            target=">= 0.95x receiver up", ok=ratio >= 0.95,
            notes=f"p99 {down_load.p99_ms:.1f} ms; RSS every {chunk:.0f}s (MiB): {samples}"),
        row(bench, "RSS drift during outage (first to last sample)", drift_mib, "MiB",
            higher_is_better=False, target="flat (< 5 MiB)", ok=abs(drift_mib) < 5,
            notes=f"after the first {chunk:.0f}s the bounded queues are full ({fill_mib:+.1f} MiB); "
            f"max {max(down_rss) / 1024:.1f} MiB"),
        row(bench, "receiver back", rec_load.rps, "req/s", baseline=up_load.rps,
            ok=received > 0,
            notes=f"{received} B of spans reached the restarted receiver; RSS {rec_rss[-1] / 1024:.1f} MiB"),
    ]  # fmt: skip
