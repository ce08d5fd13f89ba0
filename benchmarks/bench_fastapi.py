"""FastAPI hello-world throughput and p99 latency, one uvicorn worker, wrk on loopback.

Cases, run alternately (round-robin) so machine noise hits all of them alike;
the table reports medians over rounds and ratios against the uninstrumented
median of the same run (the target is checked on that ratio). The notes add the
median of per-round ratios (each round's case against the uninstrumented run of
the same round), which cancels the machine's drift between rounds:

* uninstrumented;
* ``platform_otel.init()`` (server span, duration histogram, log correlation,
  OTLP/gRPC export to a live local sink);
* the same with the pure-Python wire encoder (``PLATFORM_OTEL_OTLP_ENCODER=python``,
  what an install without a C compiler gets) and on the SDK path
  (``PLATFORM_OTEL_OTLP_ENCODER=official``: SDK spans, histogram, batch processors and
  encoder; what runs when the fast path turns itself off);
* the same with head sampling at 10% (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
  ``OTEL_TRACES_SAMPLER_ARG=0.1``): a configuration, not equivalent telemetry;
* ``opentelemetry-instrument`` (official zero-code, OTLP/gRPC traces, metrics and
  logs, log correlation; zero-code offers no setting to drop the ``receive``/``send``
  spans, so this is three spans per request);
* ``FastAPIInstrumentor.instrument_app(exclude_spans=["receive", "send"])`` with
  hand-built SDK providers exporting over OTLP/gRPC plus the official logging
  instrumentation.

Scenarios: uvicorn's default (access log on, written to /dev/null) and
``--no-access-log``, both with the ``uvicorn`` package alone (its pure-Python ``h11``
parser and asyncio's loop); then uvicorn as ``uvicorn[standard]`` installs it
(``httptools`` parser, ``uvloop``), access log on, for the uninstrumented, ``init()``
and both official cases. The server's own work per request is about a
third smaller there, so the same telemetry is a larger share of it.
``BENCH_FASTAPI_EXTRA=lean-manual`` adds the lean path with hand-built providers
(no ``init()``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _common import load, median, row, server, sink, standard_server_deps

__all__ = ["CASES", "run"]

# (label, BENCH_MODE, wrapped in opentelemetry-instrument)
CASES: list[tuple[str, str, bool]] = [
    ("uninstrumented", "none", False),
    ("platform_otel.init()", "platform", False),
    (
        "platform_otel.init(), pure-Python encoder (no C extension)",
        "platform-python-encoder",
        False,
    ),
    (
        "platform_otel.init(), SDK path (PLATFORM_OTEL_OTLP_ENCODER=official)",
        "platform-official-encoder",
        False,
    ),
    ("platform_otel.init(), 10% of traces sampled (histogram: all)", "platform-sampled", False),
    ("official: opentelemetry-instrument", "none", True),
    ("official: FastAPIInstrumentor(exclude_spans)", "official-app", False),
]


def run(quick: bool) -> list[dict[str, Any]]:
    rounds = 1 if quick else int(os.environ.get("BENCH_ROUNDS", "3"))
    seconds = 3.0 if quick else float(os.environ.get("BENCH_SECONDS", "10"))
    warmup = 1.0 if quick else 2.0
    connections = int(os.environ.get("BENCH_CONNECTIONS", "32"))
    cases = list(CASES)
    for extra in filter(None, os.environ.get("BENCH_FASTAPI_EXTRA", "").split(",")):
        cases.append((f"{extra} (hand-built providers)", extra, False))
    # (name, access log, extra PYTHONPATH for the server, cases)
    scenarios: list[tuple[str, bool, Path | None, list[tuple[str, str, bool]]]] = [
        ("access log on", True, None, cases)
    ]
    rows: list[dict[str, Any]] = []
    if not quick:
        scenarios.append(("no access log", False, None, cases))
        standard = standard_server_deps()
        if standard is not None:
            subset = [c for c in cases if c[1] in ("none", "platform", "official-app")]
            scenarios.append(
                ("uvicorn[standard]: httptools + uvloop, access log on", True, standard, subset)
            )
        else:
            rows.append(
                row(
                    "fastapi hello-world (uvicorn[standard])",
                    "skipped",
                    0.0,
                    "",
                    notes="httptools and uvloop could not be installed (pip)",
                )
            )
    with sink() as s:
        for scenario, access_log, extra_path, run_cases in scenarios:
            rps: dict[str, list[float]] = {c[0]: [] for c in run_cases}
            p99: dict[str, list[float]] = {c[0]: [] for c in run_cases}
            exported: dict[str, list[float]] = {c[0]: [] for c in run_cases}
            errors: dict[str, int] = {c[0]: 0 for c in run_cases}
            for _ in range(rounds):
                for label, mode, wrapper in run_cases:
                    before = s.counts().get("traces", {}).get("bytes", 0)
                    with server(
                        mode,
                        s.endpoint,
                        access_log=access_log,
                        official_wrapper=wrapper,
                        extra_path=extra_path,
                    ) as srv:
                        load(srv.url, warmup, connections)
                        result = load(srv.url, seconds, connections)
                    time.sleep(0.3)  # let the final flush land before reading the counts
                    after = s.counts().get("traces", {}).get("bytes", 0)
                    if s.proc.poll() is not None:  # every export would fail from here on
                        raise RuntimeError("the OTLP sink exited: no live receiver to measure")
                    rps[label].append(result.rps)
                    p99[label].append(result.p99_ms)
                    errors[label] += result.errors
                    total = result.requests + 1
                    exported[label].append((after - before) / total)
            base = median(rps[run_cases[0][0]])
            base_p99 = median(p99[run_cases[0][0]])
            base_runs = rps[run_cases[0][0]]
            for label, mode, _ in run_cases:
                value = median(rps[label])
                ratio = value / base if base else None
                # Each round's case against the uninstrumented run of the same round: machine
                # speed drifts between rounds, and this pairing cancels the drift.
                paired = median([r / b for r, b in zip(rps[label], base_runs, strict=True) if b])
                is_ours = mode.startswith("platform") and not mode.endswith("-sampled")
                rows.append(
                    row(
                        f"fastapi hello-world ({scenario})",
                        label,
                        value,
                        "req/s",
                        baseline=base,
                        target=">= 0.85x uninstrumented" if is_ours else "",
                        ok=(ratio is not None and ratio >= 0.85) if is_ours else None,
                        notes=(
                            f"p99 {median(p99[label]):.1f} ms (uninstrumented {base_p99:.1f} ms); "
                            f"{median(exported[label]):.0f} B of spans exported per request; "
                            f"median of per-round ratios {paired:.2f}x; "
                            f"{rounds} round(s) x {seconds:.0f}s, {connections} connections"
                            + (f"; {errors[label]} errors" if errors[label] else "")
                        ),
                        runs=rps[label],
                        p99_ms=p99[label],
                    )
                )
    return rows
