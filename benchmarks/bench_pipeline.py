"""Per-operation cost of a pipeline stage vs the same telemetry written by hand with the raw SDK.

Issue 4 target: a stage costs <= 1.3x the hand-written equivalent. "The same telemetry":
one span (same name, kind, attributes), ``pipeline.items`` counter add, two histogram
records (``pipeline.stage.duration``, ``pipeline.lag``), ``pipeline.items.in_flight``
add and subtract, with the same attribute sets. Both sides share one TracerProvider
(SimpleSpanProcessor into a discarding exporter: deterministic, no background thread)
and one MeterProvider (an in-memory reader that is never collected during the timing).

Runs alternate (raw, stage, raw, stage, ...) so drift on a shared machine hits both;
each run is timed in process CPU time; the ratio is of the medians. ``run(quick)`` returns rows for the benchmark harness;
``python benchmarks/bench_pipeline.py [--quick]`` prints them.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

try:
    from platform_otel._pipeline import DURATION_BUCKETS, LAG_BUCKETS, pipeline
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from platform_otel._pipeline import DURATION_BUCKETS, LAG_BUCKETS, pipeline

__all__ = ["TARGET_RATIO", "run"]

TARGET_RATIO = 1.3
PIPELINE, STAGE = "document-ingest", "convert"


class _Discard(SpanExporter):
    """Accepts spans and drops them: the exporter's cost is not what is measured."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _providers() -> tuple[TracerProvider, MeterProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(_Discard()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tp, mp


def _raw_op(tp: TracerProvider, mp: MeterProvider) -> Callable[[int], None]:
    """The stage's telemetry written by hand, as a careful user would with the raw SDK."""
    tracer = tp.get_tracer("bench.raw")
    meter = mp.get_meter("bench.raw")
    items = meter.create_counter("pipeline.items", unit="{item}")
    duration = meter.create_histogram(
        "pipeline.stage.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )
    lag = meter.create_histogram(
        "pipeline.lag", unit="s", explicit_bucket_boundaries_advisory=LAG_BUCKETS
    )
    in_flight = meter.create_up_down_counter("pipeline.items.in_flight", unit="{item}")
    attrs = {"pipeline": PIPELINE, "stage": STAGE}
    attrs_ok = {**attrs, "outcome": "success"}
    span_name = f"{PIPELINE} {STAGE}"
    perf_counter, now = time.perf_counter, time.time

    def op(i: int) -> None:
        enqueued_at = now() - 0.5
        with tracer.start_as_current_span(
            span_name,
            kind=SpanKind.CONSUMER,
            attributes={
                "pipeline.name": PIPELINE,
                "pipeline.stage": STAGE,
                "pipeline.item.id": i,
                "pipeline.lag": now() - enqueued_at,
            },
        ) as span:
            in_flight.add(1, attrs)
            lag.record(now() - enqueued_at, attrs)
            t0 = perf_counter()
            # (the stage's work would run here)
            items.add(1, attrs_ok)
            duration.record(perf_counter() - t0, attrs_ok)
            in_flight.add(-1, attrs)
            span.set_attribute("pipeline.outcome", "success")

    return op


def _stage_op(tp: TracerProvider, mp: MeterProvider) -> Callable[[int], None]:
    pipe = pipeline(PIPELINE, tracer_provider=tp, meter_provider=mp)
    now = time.time

    def op(i: int) -> None:
        with pipe.stage(STAGE, item_id=i, enqueued_at=now() - 0.5):
            pass  # (the stage's work would run here)

    return op


def _decorated_op(tp: TracerProvider, mp: MeterProvider) -> Callable[[int], None]:
    pipe = pipeline(PIPELINE, tracer_provider=tp, meter_provider=mp)
    now = time.time

    @pipe.stage(STAGE, item_id=lambda i: i, enqueued_at=lambda i: now() - 0.5)
    def op(i: int) -> None:
        return None

    return op


def _per_op_us(op: Callable[[int], None], n: int) -> float:
    def loop() -> None:
        for i in range(n):
            op(i)

    # CPU time of this process (no background threads here): other sessions' load on a
    # shared machine stretches wall time but barely moves this.
    return timeit.timeit(loop, number=1, timer=time.process_time) / n * 1e6


def _compare(
    baseline: Callable[[int], None], candidate: Callable[[int], None], n: int, rounds: int
) -> tuple[float, float]:
    """Median µs/op of baseline and candidate over alternating rounds (after a warm-up)."""
    _per_op_us(baseline, n // 4)
    _per_op_us(candidate, n // 4)
    base: list[float] = []
    cand: list[float] = []
    for r in range(rounds):
        order = ((baseline, base), (candidate, cand))
        for fn, out in order if r % 2 == 0 else reversed(order):
            out.append(_per_op_us(fn, n))
    return statistics.median(base), statistics.median(cand)


def run(
    quick: bool = False, *, n: int | None = None, rounds: int | None = None
) -> list[dict[str, Any]]:
    """Rows for the benchmark harness (same keys as ``_common.row`` plus ``name``, ``baseline``).

    ``value`` and ``baseline`` are µs per stage; ``ratio`` = value / baseline, lower is better.
    """
    n = n or (300 if quick else 400)
    rounds = rounds or (11 if quick else 31)
    tp, mp = _providers()
    raw = _raw_op(tp, mp)
    rows = []
    for case, candidate in (
        ("with pipe.stage(...)", _stage_op(tp, mp)),
        ("@pipe.stage(...) decorator", _decorated_op(tp, mp)),
    ):
        base, value = _compare(raw, candidate, n, rounds)
        ratio = value / base
        rows.append(
            {
                "benchmark": "pipeline stage vs raw SDK",
                "case": case,
                "name": f"pipeline stage ({case}) vs raw SDK",
                "value": round(value, 2),
                "unit": "us/op",
                "baseline": round(base, 2),
                "ratio": round(ratio, 3),
                "higher_is_better": False,
                "target": f"ratio <= {TARGET_RATIO}",
                "ok": ratio <= TARGET_RATIO,
                "notes": f"median of {rounds} alternating rounds x {n} ops; "
                "span + items add + 2 histogram records + in-flight add/sub",
            }
        )
    tp.shutdown()
    mp.shutdown()
    return rows


def main() -> None:
    rows = run(quick="--quick" in sys.argv)
    print(f"{'pipeline stage vs raw SDK':30} {'value':>10} {'baseline':>10} {'ratio':>7}  target")
    for row in rows:
        print(
            f"{row['case']:30} {row['value']:>7.2f} us {row['baseline']:>7.2f} us "
            f"{row['ratio']:>7.3f}  {row['target']} {'ok' if row['ok'] else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
