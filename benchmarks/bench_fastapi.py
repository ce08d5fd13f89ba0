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

Tail latency under a fixed rate: after its throughput run, every case gets the same
open-loop load (``_openloop.py``: requests scheduled at a fixed rate, latency from each
request's scheduled time, so a server that falls behind is charged for the wait).
The rate is ``BENCH_OPENLOOP_FRACTION`` (default 0.5) of the uninstrumented case's
throughput in the first round of the scenario, so the bare app runs well below
capacity; ``BENCH_OPENLOOP_SECONDS`` (default 5, ``--quick``: 2) per run, after 1 s
(``--quick``: 0.5 s) at the same rate that is not recorded. These rows
compare p99 against the uninstrumented p99 at that rate (target for ``init()``:
at most 2x); a case that cannot sustain the rate is marked saturated.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _common import (
    OpenLoad,
    load,
    median,
    open_loop,
    row,
    server,
    sink,
    standard_server_deps,
)

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


OPENLOOP_TARGET = 2.0  # init()'s open-loop p99 at most this many times the uninstrumented p99


def run(quick: bool, only_modes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``only_modes``: run just the cases with these ``BENCH_MODE`` values (the test's
    short run); the first case kept must be the uninstrumented one."""
    rounds = 1 if quick else int(os.environ.get("BENCH_ROUNDS", "3"))
    seconds = 3.0 if quick else float(os.environ.get("BENCH_SECONDS", "10"))
    warmup = 1.0 if quick else 2.0
    connections = int(os.environ.get("BENCH_CONNECTIONS", "32"))
    ol_fraction = float(os.environ.get("BENCH_OPENLOOP_FRACTION", "0.5"))
    ol_seconds = float(os.environ.get("BENCH_OPENLOOP_SECONDS", "2" if quick else "5"))
    ol_drain = 1.0 if quick else 2.0
    ol_warmup = 0.5 if quick else 1.0  # same rate, not recorded: connections open, exporter settles
    ol_connections = int(os.environ.get("BENCH_OPENLOOP_CONNECTIONS", "256"))
    cases = list(CASES)
    if only_modes:
        cases = [c for c in cases if c[1] in only_modes and not (c[1] == "none" and c[2])]
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
            ol_runs: dict[str, list[OpenLoad]] = {c[0]: [] for c in run_cases}
            ol_rate = 0.0  # fixed for the scenario once the first uninstrumented run is done
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
                        if not ol_rate:
                            ol_rate = round(max(1.0, result.rps * ol_fraction))
                        ol = open_loop(
                            srv.url, ol_seconds, ol_rate, ol_connections, ol_drain, ol_warmup
                        )
                    time.sleep(0.3)  # let the final flush land before reading the counts
                    after = s.counts().get("traces", {}).get("bytes", 0)
                    if s.proc.poll() is not None:  # every export would fail from here on
                        raise RuntimeError("the OTLP sink exited: no live receiver to measure")
                    rps[label].append(result.rps)
                    p99[label].append(result.p99_ms)
                    errors[label] += result.errors
                    ol_runs[label].append(ol)
                    total = result.requests + ol.answered + 1
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
            rows.extend(_open_loop_rows(scenario, run_cases, ol_runs, ol_rate, ol_seconds))
    return rows


def _open_loop_rows(
    scenario: str,
    run_cases: list[tuple[str, str, bool]],
    runs: dict[str, list[OpenLoad]],
    rate: float,
    seconds: float,
) -> list[dict[str, Any]]:
    """One row per case: median open-loop p99 over rounds, against the uninstrumented one."""
    base_label = run_cases[0][0]
    base_p99 = median([r.p99_ms for r in runs[base_label]])
    rows: list[dict[str, Any]] = []
    for label, mode, _ in run_cases:
        rs = runs[label]
        p99 = median([r.p99_ms for r in rs])
        answered = median([r.rate for r in rs])
        # Below 95% of the scheduled rate the server cannot keep up: its queue (and p99) grows
        # with the run's length, so the ratio says "saturated" more than it measures a tail.
        saturated = answered < 0.95 * rate
        is_ours = mode.startswith("platform") and not mode.endswith("-sampled")
        ratio = p99 / base_p99 if base_p99 else None
        # As for throughput: each round against the uninstrumented run of the same round.
        pairs = [r.p99_ms / b.p99_ms for r, b in zip(rs, runs[base_label], strict=True) if b.p99_ms]
        unfinished = sum(r.unfinished for r in rs)
        errors = sum(r.errors for r in rs)
        rows.append(
            row(
                f"fastapi open-loop p99 at {rate:.0f} req/s ({scenario})",
                label,
                p99,
                "ms",
                baseline=base_p99,
                higher_is_better=False,
                target=f"<= {OPENLOOP_TARGET:g}x uninstrumented" if is_ours else "",
                ok=(ratio is not None and ratio <= OPENLOOP_TARGET) if is_ours else None,
                notes=(
                    f"p50 {median([r.p50_ms for r in rs]):.1f} ms, "
                    f"p99.9 {median([r.p999_ms for r in rs]):.1f} ms; "
                    f"median of per-round p99 ratios {median(pairs):.2f}x; "
                    f"answered {answered:.0f} of {rate:.0f} req/s scheduled"
                    + (" (saturated: the queue grows with the run)" if saturated else "")
                    + f"; {sum(r.late for r in rs)} of {sum(r.requests for r in rs)} requests "
                    f"sent > 5 ms late ({sum(r.queued for r in rs)} waited for a connection; "
                    f"generator's own delay p99 {median([r.gen_lag_p99_ms for r in rs]):.1f} ms)"
                    + (f"; {unfinished} unanswered after the drain" if unfinished else "")
                    + (f"; {errors} errors" if errors else "")
                    + f"; {len(rs)} round(s) x {seconds:g}s, open loop"
                ),
                openloop_rate=rate,
                openloop_p99_ms=[r.p99_ms for r in rs],
                openloop_p50_ms=[r.p50_ms for r in rs],
                openloop_p999_ms=[r.p999_ms for r in rs],
                openloop_answered_rate=[r.rate for r in rs],
                openloop_late=[r.late for r in rs],
                openloop_gen_lag_p99_ms=[r.gen_lag_p99_ms for r in rs],
                openloop_unfinished=[r.unfinished for r in rs],
                openloop_errors=[r.errors for r in rs],
                saturated=saturated,
            )
        )
    return rows
