"""Pipeline API: spans, outcome counts, lag, duration, queue depth and trace continuity."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from platform_otel import _safety
from platform_otel._pipeline import ENQUEUED_AT_KEY, Pipeline, pipeline
from tests.support.documented import assert_documented

SPAN_NAME_PATTERN = "{pipeline.name} {pipeline.stage}"
METRIC_ATTRS = {"pipeline", "stage", "outcome", "queue"}


@dataclass
class Env:
    """Explicit SDK providers with in-memory exporters, and helpers to read what they got."""

    spans_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tp: TracerProvider
    mp: MeterProvider

    def pipe(self, name: str = "ingest") -> Pipeline:
        return pipeline(name, tracer_provider=self.tp, meter_provider=self.mp)

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def points(self) -> list[tuple[str, dict[str, Any], Any]]:
        """(metric name, attributes, data point) for every point collected now."""
        out = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        out.append((metric.name, dict(point.attributes), point))
        return out

    def point(self, name: str, **attrs: str) -> Any:
        found = [p for n, a, p in self.points() if n == name and a == attrs]
        assert len(found) == 1, f"{name}{attrs}: {[(n, a) for n, a, _ in self.points()]}"
        return found[0]

    def counts(self, name: str = "pipeline.items") -> dict[str, int]:
        return {a["outcome"]: p.value for n, a, p in self.points() if n == name}

    def check_documented(self) -> None:
        """Every emitted span/metric name and attribute must be in docs/telemetry.md."""
        names = {SPAN_NAME_PATTERN}
        for span in self.spans():
            names.update(span.attributes or {})
            for event in span.events:
                names.add(event.name)
                names.update(event.attributes or {})
        for name, attrs, _ in self.points():
            names.add(name)
            names.update(attrs)
        assert_documented(names)


@pytest.fixture
def env() -> Iterator[Env]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Env(exporter, reader, tp, mp)
    tp.shutdown()
    mp.shutdown()


class Boom(Exception):
    pass


def test_outcome_counts_are_exact_and_app_exceptions_pass_through(env: Env) -> None:
    """N items with failures, retries and skips give exact pipeline.items counts per outcome."""
    pipe = env.pipe()
    raised: list[BaseException] = []
    for i in range(20):
        try:
            with pipe.stage("convert", item_id=f"doc-{i}") as run:
                if i % 5 == 0:
                    raise Boom(f"bad {i}")
                if i % 7 == 0:
                    run.set_outcome("retry")
                elif i == 13:
                    run.set_outcome("skipped")
        except Boom as exc:
            raised.append(exc)
    assert [str(e) for e in raised] == ["bad 0", "bad 5", "bad 10", "bad 15"]
    assert env.counts() == {"failure": 4, "retry": 2, "skipped": 1, "success": 13}
    failed = [s for s in env.spans() if s.attributes["pipeline.outcome"] == "failure"]
    assert len(failed) == 4
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "Boom"
        assert [e.name for e in span.events] == ["exception"]
    assert env.point("pipeline.items.in_flight", pipeline="ingest", stage="convert").value == 0
    env.check_documented()


def test_explicit_outcome_wins_over_exception(env: Env) -> None:
    """set_outcome('retry') then raise counts a retry, while the span still records the error."""
    pipe = env.pipe()
    with pytest.raises(Boom), pipe.stage("convert") as run:
        run.set_outcome("retry")
        raise Boom("transient")
    assert env.counts() == {"retry": 1}
    (span,) = env.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "Boom"


def test_lag_and_duration_histograms(env: Env) -> None:
    """Each of N items adds one lag and one duration observation; lag = stage start - enqueued_at."""
    pipe = env.pipe()
    now = time.time()
    lags = [float(i) for i in range(1, 9)]
    stamps: list[Any] = [now - lag for lag in lags[:4]]
    stamps += [datetime.fromtimestamp(now - lag, timezone.utc) for lag in lags[4:6]]
    stamps += [int(now - lags[6]), datetime.fromtimestamp(now - lags[7], timezone.utc).isoformat()]
    for i, stamp in enumerate(stamps):
        with pipe.stage("convert", item_id=i, enqueued_at=stamp):
            time.sleep(0.002)
    lag = env.point("pipeline.lag", pipeline="ingest", stage="convert")
    duration = env.point(
        "pipeline.stage.duration", pipeline="ingest", stage="convert", outcome="success"
    )
    assert lag.count == duration.count == len(stamps)
    assert lag.sum == pytest.approx(sum(lags), abs=2.0)  # int() truncation and test runtime
    assert lag.min >= 1.0 and lag.max < 10.0
    assert duration.min >= 0.002 and duration.sum < 5.0
    assert list(lag.explicit_bounds)[:3] == [0.01, 0.05, 0.1]
    spans = sorted(env.spans(), key=lambda s: s.attributes["pipeline.item.id"])
    for span, expected in zip(spans[:6], lags[:6], strict=True):
        assert span.kind is SpanKind.CONSUMER
        assert span.attributes["pipeline.lag"] == pytest.approx(expected, abs=0.5)
    env.check_documented()


def test_future_enqueued_at_counts_as_zero_lag(env: Env) -> None:
    """A timestamp from a producer whose clock runs ahead records lag 0, not a negative value."""
    with env.pipe().stage("convert", enqueued_at=time.time() + 30):
        pass
    lag = env.point("pipeline.lag", pipeline="ingest", stage="convert")
    assert (lag.count, lag.sum) == (1, 0.0)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("yesterday", "not a number"),
        (time.time() * 1000, "milliseconds"),
        (float("nan"), "finite"),
        (object(), "expected epoch seconds"),
        (True, "expected epoch seconds"),
    ],
)
def test_bad_enqueued_at_is_ignored_with_a_warning(
    env: Env, caplog: pytest.LogCaptureFixture, bad: Any, why: str
) -> None:
    """An unusable enqueued_at never breaks the stage: no lag recorded, one clear warning."""
    with _safety._seen_lock:
        _safety._seen.clear()
    with (
        caplog.at_level(logging.WARNING, logger="platform_otel"),
        env.pipe().stage("convert", enqueued_at=bad),
    ):
        result = "ran"
    assert result == "ran"
    assert env.counts() == {"success": 1}
    assert not [n for n, _, _ in env.points() if n == "pipeline.lag"]
    assert any(why in r.getMessage() and "enqueued_at" in r.getMessage() for r in caplog.records)


def test_naive_datetime_is_taken_as_utc(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A naive datetime enqueued_at is read as UTC, with a one-time warning saying so."""
    with _safety._seen_lock:
        _safety._seen.clear()
    naive = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=5)
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        for _ in range(3):
            with env.pipe().stage("convert", enqueued_at=naive):
                pass
    lag = env.point("pipeline.lag", pipeline="ingest", stage="convert")
    assert lag.count == 3
    assert lag.min >= 5.0 and lag.max < 7.0
    assert len([r for r in caplog.records if "naive" in r.getMessage()]) == 1


def test_queue_depth_gauge(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """observe_queue reports the callable's value each collection; failures are skipped; unregister stops it."""
    pipe = env.pipe()
    backlog = [1, 2, 3]
    pending = pipe.observe_queue("pending", depth=lambda: len(backlog))

    def broken() -> int:
        raise RuntimeError("queue backend down")

    pipe.observe_queue("dead-letter", depth=broken)
    assert env.point("pipeline.queue.depth", pipeline="ingest", queue="pending").value == 3
    backlog.extend([4, 5])
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        assert env.point("pipeline.queue.depth", pipeline="ingest", queue="pending").value == 5
    queues = {a["queue"] for n, a, _ in env.points() if n == "pipeline.queue.depth"}
    assert queues == {"pending"}
    assert pending.unregister() is True
    assert pending.unregister() is False
    assert not [a for n, a, _ in env.points() if n == "pipeline.queue.depth"]
    env.check_documented()


def test_decorator_on_all_function_kinds(env: Env) -> None:
    """The decorator gives one span and one count per call for sync, async, generator and async generator functions."""
    pipe = env.pipe()

    @pipe.stage("sync", item_id=lambda doc: doc["id"])
    def sync_fn(doc: dict[str, str]) -> str:
        return doc["id"].upper()

    @pipe.stage("async")
    async def async_fn(x: int) -> int:
        await asyncio.sleep(0)
        pipe.current_stage().set_outcome("skipped")
        return x + 1

    @pipe.stage("gen")
    def gen_fn(n: int) -> Iterator[int]:
        for i in range(n):
            assert trace.get_current_span().get_span_context().is_valid  # stage span is current
            yield i

    @pipe.stage("agen")
    async def agen_fn(n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @pipe.stage("sync-fail")
    def failing() -> None:
        raise Boom("no")

    @pipe.stage  # bare: the stage is named after the function
    def bare(x: int) -> int:
        return x * 2

    async def drive() -> tuple[int, list[int]]:
        return await async_fn(1), [i async for i in agen_fn(3)]

    assert sync_fn({"id": "a"}) == "A"
    assert asyncio.run(drive()) == (2, [0, 1, 2])
    assert list(gen_fn(4)) == [0, 1, 2, 3]
    with pytest.raises(Boom, match="no"):
        failing()
    assert sync_fn.__name__ == "sync_fn"
    assert bare(2) == 4
    outcomes = {
        s.attributes["pipeline.stage"]: s.attributes["pipeline.outcome"] for s in env.spans()
    }
    assert outcomes == {
        "sync": "success",
        "async": "skipped",
        "gen": "success",
        "agen": "success",
        "sync-fail": "failure",
        "bare": "success",
    }
    assert (
        next(s for s in env.spans() if s.name == "ingest sync").attributes["pipeline.item.id"]
        == "a"
    )
    in_flight = [p.value for n, _, p in env.points() if n == "pipeline.items.in_flight"]
    assert in_flight == [0] * 6
    env.check_documented()


def test_generator_stage_spans_the_whole_iteration_and_early_close_ends_it(env: Env) -> None:
    """A generator stage ends when the consumer breaks out early, without marking a failure."""
    pipe = env.pipe()

    @pipe.stage("pages")
    def pages() -> Iterator[int]:
        yield from range(100)

    gen = pages()
    assert next(gen) == 0
    with env.tp.get_tracer("consumer").start_as_current_span("consumer-work"):
        assert next(gen) == 1  # consumer code between yields is not inside the stage
    assert not [s for s in env.spans() if s.name == "ingest pages"]  # still running
    assert env.point("pipeline.items.in_flight", pipeline="ingest", stage="pages").value == 1
    gen.close()
    (span,) = [s for s in env.spans() if s.name == "ingest pages"]
    consumer = next(s for s in env.spans() if s.name == "consumer-work")
    assert consumer.parent is None
    assert span.attributes["pipeline.outcome"] == "success"
    assert span.status.status_code is StatusCode.UNSET
    assert env.point("pipeline.items.in_flight", pipeline="ingest", stage="pages").value == 0

    @pipe.stage("chunks")
    async def chunks() -> Any:
        for i in range(100):
            yield i

    async def take_two() -> list[int]:
        out = []
        agen = chunks()
        async for i in agen:
            out.append(i)
            if i == 1:
                break
        await agen.aclose()
        return out

    assert asyncio.run(take_two()) == [0, 1]
    assert [s.attributes["pipeline.outcome"] for s in env.spans() if s.name == "ingest chunks"] == [
        "success"
    ]
    for stage in ("pages", "chunks"):
        assert (
            env.point("pipeline.items", pipeline="ingest", stage=stage, outcome="success").value
            == 1
        )


def test_exception_inside_generator_and_thrown_in(env: Env) -> None:
    """An exception raised by a generator stage, or thrown into it, marks failure and propagates."""
    pipe = env.pipe()

    @pipe.stage("gen")
    def gen() -> Iterator[int]:
        yield 1
        raise Boom("mid-stream")

    with pytest.raises(Boom, match="mid-stream"):
        list(gen())

    @pipe.stage("gen")
    def echo() -> Iterator[int]:
        received = yield 1
        yield received * 2

    g = echo()
    assert next(g) == 1
    assert g.send(21) == 42
    with pytest.raises(Boom, match="thrown"):
        g.throw(Boom("thrown"))
    assert env.counts() == {"failure": 2}


async def test_async_context_manager_keeps_concurrent_items_apart(env: Env) -> None:
    """Concurrent `async with` stages each parent their own child spans and count once."""
    pipe = env.pipe()
    tracer = env.tp.get_tracer("app")

    async def work(i: int) -> None:
        async with pipe.stage("convert", item_id=i) as run:
            await asyncio.sleep(0.01 * (5 - i))
            with tracer.start_as_current_span(f"child-{i}"):
                await asyncio.sleep(0)
            if i == 2:
                run.set_outcome("skipped")

    await asyncio.gather(*(work(i) for i in range(5)))
    stages = {
        s.attributes["pipeline.item.id"]: s for s in env.spans() if s.name == "ingest convert"
    }
    for i in range(5):
        child = next(s for s in env.spans() if s.name == f"child-{i}")
        assert child.parent is not None
        assert child.parent.span_id == stages[i].context.span_id
    assert env.counts() == {"success": 4, "skipped": 1}


def test_nested_stages_form_a_tree(env: Env) -> None:
    """A stage inside another stage is its child span; current_stage() finds the innermost."""
    pipe = env.pipe()
    with pipe.stage("outer") as outer:
        with pipe.stage("inner") as inner:
            assert pipe.current_stage() is inner
        assert pipe.current_stage() is outer
    assert not pipe.current_stage().span.get_span_context().is_valid
    spans = {s.name: s for s in env.spans()}
    assert spans["ingest inner"].parent.span_id == spans["ingest outer"].context.span_id


def test_carrier_continues_the_producer_trace(env: Env) -> None:
    """A consumer stage given the producer's carrier is a CONSUMER child of the producer span, with lag."""
    pipe = env.pipe()
    with pipe.stage("submit") as producer:
        headers = pipe.inject({}, enqueued_at=time.time() - 3)
    # (the message crosses a queue as JSON; the consumer has only the headers)
    headers = json.loads(json.dumps(headers))
    assert set(headers) >= {"traceparent", ENQUEUED_AT_KEY}
    with pipe.stage("convert", carrier=headers, item_id="doc-1"):
        pass
    consumer = next(s for s in env.spans() if s.name == "ingest convert")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.span.get_span_context().trace_id
    assert consumer.parent.span_id == producer.span.get_span_context().span_id
    assert consumer.parent.is_remote
    assert consumer.attributes["pipeline.lag"] == pytest.approx(3.0, abs=0.5)
    assert env.point("pipeline.lag", pipeline="ingest", stage="convert").count == 1
    env.check_documented()


def test_link_mode_starts_a_new_trace_linked_to_the_producer(env: Env) -> None:
    """With link=True the consumer stage starts a new trace carrying a link to the producer span."""
    pipe = env.pipe()
    with env.tp.get_tracer("producer").start_as_current_span("enqueue") as producer:
        headers = pipe.inject()
    with (
        env.tp.get_tracer("worker").start_as_current_span("poll"),
        pipe.stage("convert", carrier=headers, link=True),
    ):
        pass
    consumer = next(s for s in env.spans() if s.name == "ingest convert")
    assert consumer.parent is None
    assert consumer.context.trace_id != producer.get_span_context().trace_id
    assert [link.context.span_id for link in consumer.links] == [
        producer.get_span_context().span_id
    ]
    assert env.point("pipeline.lag", pipeline="ingest", stage="convert").count == 1


def test_extract_returns_the_producer_context(env: Env) -> None:
    """pipe.extract(carrier) gives a context whose span is the producer's (for manual use)."""
    pipe = env.pipe()
    with env.tp.get_tracer("p").start_as_current_span("enqueue") as producer:
        headers = pipe.inject(enqueued_at=False)
    assert ENQUEUED_AT_KEY not in headers
    ctx = pipe.extract(headers)
    assert (
        trace.get_current_span(ctx).get_span_context().span_id
        == producer.get_span_context().span_id
    )


def test_batch_stage_counts_items_per_outcome(env: Env) -> None:
    """A batch of 10 is one span; add_items(3, outcome='failure') counts 3 failures and 7 successes."""
    pipe = env.pipe()
    with pipe.batch("embed", size=10) as run:
        run.add_items(3, outcome="failure")
    with pytest.raises(Boom), pipe.stage("embed", batch_size=4) as run:
        run.add_items(1, outcome="skipped")
        raise Boom("model down")
    assert env.counts() == {"success": 7, "failure": 3 + 3, "skipped": 1}
    spans = [s for s in env.spans() if s.name == "ingest embed"]
    assert [s.attributes["pipeline.batch.size"] for s in spans] == [10, 4]
    assert spans[0].attributes["pipeline.batch.outcomes"] == "failure=3,success=7"
    duration = [p.count for n, _, p in env.points() if n == "pipeline.stage.duration"]
    assert sum(duration) == 2  # one observation per batch
    now = time.time()
    with pipe.batch("embed", size=3, enqueued_at=[now - 1, now - 2, now - 3]):
        pass
    lag = env.point("pipeline.lag", pipeline="ingest", stage="embed")
    assert lag.count == 3 and lag.sum == pytest.approx(6.0, abs=0.5)  # one per item
    env.check_documented()


def test_item_ids_never_reach_metric_attributes(env: Env) -> None:
    """Item ids are span attributes only; metric attributes are pipeline, stage, outcome, queue."""
    pipe = env.pipe()
    ids = [f"doc-{i}" for i in range(10)]
    for item in ids:
        with pipe.stage("convert", item_id=item, enqueued_at=time.time()):
            pass
    pipe.observe_queue("pending", depth=lambda: 1)
    for name, attrs, _ in env.points():
        assert set(attrs) <= METRIC_ATTRS, (name, attrs)
        assert not set(attrs.values()) & set(ids)
    assert sorted(s.attributes["pipeline.item.id"] for s in env.spans()) == sorted(ids)


def test_metric_attribute_values_are_capped(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Ids mistakenly used as stage or outcome names collapse into 'other' with a warning."""
    pipe = env.pipe("capped")
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        for i in range(80):
            with pipe.stage(f"stage-{i}") as run:
                run.set_outcome(f"outcome-{i}")
    stages = {a["stage"] for n, a, _ in env.points() if n == "pipeline.items"}
    outcomes = {a["outcome"] for n, a, _ in env.points() if n == "pipeline.items"}
    assert len(stages) == 51 and "other" in stages
    assert len(outcomes) == 21 and "other" in outcomes
    assert sum(p.value for n, _, p in env.points() if n == "pipeline.items") == 80
    assert any("distinct stage values" in r.getMessage() for r in caplog.records)


def test_telemetry_failure_never_reaches_the_app(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """If our telemetry code fails, the stage body still runs and the app's own exceptions still propagate."""
    monkeypatch.delenv("PLATFORM_OTEL_RAISE_INTERNAL", raising=False)

    class BrokenTracerProvider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            raise RuntimeError("tracer provider broken")

    pipe = pipeline("broken", tracer_provider=BrokenTracerProvider(), meter_provider=env.mp)
    with pipe.stage("convert") as run:
        run.set_outcome("retry")
        value = 42
    assert value == 42

    @pipe.stage("convert")
    def convert() -> str:
        return "converted"

    assert convert() == "converted"
    with pytest.raises(Boom), pipe.stage("convert"):
        raise Boom("app error")


def test_pipeline_objects_are_shared_per_name_and_providers(env: Env) -> None:
    """pipeline(name) returns the same object for the same name and providers."""
    assert env.pipe("a") is env.pipe("a")
    assert env.pipe("a") is not env.pipe("b")
    assert env.pipe("a").name == "a"


def test_prometheus_rendering(env: Env) -> None:
    """Scraped through the Prometheus exporter, the metrics carry the names dashboards query."""
    import inspect

    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    if "registry" in inspect.signature(PrometheusMetricReader).parameters:
        registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry)
    else:  # opentelemetry-exporter-prometheus < 0.62b0: the global registry (left at shutdown)
        from prometheus_client import REGISTRY as registry

        reader = PrometheusMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    try:
        pipe = pipeline("document-ingest", tracer_provider=env.tp, meter_provider=mp)
        for i in range(10):
            try:
                with pipe.stage("convert", item_id=f"doc-{i}", enqueued_at=time.time() - 1):
                    if i in (2, 5, 8):
                        raise Boom(i)
            except Boom:
                pass
        pipe.observe_queue("pending", depth=lambda: 17)
        text = generate_latest(registry).decode()
    finally:
        mp.shutdown()

    def sample(metric: str, **labels: str) -> float:
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name != metric:
                continue
            label_text, _, value = rest.rpartition("} ")
            got = dict(part.split("=", 1) for part in label_text.split(",") if part)
            got = {k: v.strip('"') for k, v in got.items()}
            if all(got.get(k) == v for k, v in labels.items()):
                return float(value)
        raise AssertionError(f"{metric}{labels} not in scrape:\n{text}")

    base = {"pipeline": "document-ingest", "stage": "convert"}
    assert sample("pipeline_items_total", **base, outcome="failure") == 3.0
    assert sample("pipeline_items_total", **base, outcome="success") == 7.0
    assert sample("pipeline_stage_duration_seconds_count", **base, outcome="success") == 7.0
    assert sample("pipeline_stage_duration_seconds_count", **base, outcome="failure") == 3.0
    assert sample("pipeline_lag_seconds_count", **base) == 10.0
    assert 10.0 <= sample("pipeline_lag_seconds_sum", **base) < 12.0
    assert sample("pipeline_lag_seconds_bucket", **base, le="0.5") == 0.0
    assert sample("pipeline_lag_seconds_bucket", **base, le="2.5") == 10.0
    assert sample("pipeline_queue_depth", pipeline="document-ingest", queue="pending") == 17.0
    assert sample("pipeline_items_in_flight", **base) == 0.0
    assert "pipeline_item_id" not in text and "doc-1" not in text


def test_pipeline_made_before_init_reports_after_global_providers_are_set(run_python: Any) -> None:
    """A pipeline and queue gauge created at import time, before init(), report once global providers exist."""
    result = run_python(
        """
        import json, time
        from platform_otel._pipeline import pipeline
        pipe = pipeline("early")                       # module level, before init()
        pipe.observe_queue("pending", depth=lambda: 4)
        with pipe.stage("convert"):                     # before init: goes nowhere, no error
            pass

        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        for i in range(3):
            with pipe.stage("convert", item_id=i, enqueued_at=time.time() - 1):
                pass
        points = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        points[m.name] = getattr(p, "value", None) or getattr(p, "count", None)
        print(json.dumps({"spans": [s.name for s in exporter.get_finished_spans()], "points": points}))
        """,
        {"PLATFORM_OTEL_RAISE_INTERNAL": "1"},
    )
    assert result.rc == 0, result
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["spans"] == ["early convert"] * 3
    assert out["points"]["pipeline.items"] == 3
    assert out["points"]["pipeline.lag"] == 3
    assert out["points"]["pipeline.queue.depth"] == 4
    assert not math.isnan(out["points"]["pipeline.stage.duration"])


def test_exemplars_point_at_the_stage_span(env: Env) -> None:
    """Duration and lag exemplars carry the stage span's id, so a slow bucket leads to its trace."""
    pipe = env.pipe()
    with (
        env.tp.get_tracer("worker").start_as_current_span("poll"),
        pipe.stage("convert", enqueued_at=time.time() - 1) as run,
    ):
        pass
    stage_span_id = run.span.get_span_context().span_id
    points = env.points()  # one collection: exemplars are reset by each
    for name in ("pipeline.stage.duration", "pipeline.lag"):
        (point,) = [p for n, _, p in points if n == name]
        assert [e.span_id for e in point.exemplars] == [stage_span_id], name


@pytest.mark.integration
def test_init_prometheus_endpoint_serves_pipeline_metrics(run_python: Any) -> None:
    """With platform_otel.init(prometheus_port=...), a GET /metrics shows the pipeline series."""
    from tests.support.fixtures import free_port

    port = free_port()
    result = run_python(
        f"""
        import time, urllib.request
        import platform_otel
        pipe = platform_otel.pipeline("document-ingest")  # before init(), as at module level
        platform_otel.init(service_name="pipeline-e2e", prometheus_port={port})
        backlog = [1, 2, 3, 4, 5]
        pipe.observe_queue("pending", depth=lambda: len(backlog))
        for i in range(10):
            try:
                with pipe.stage("convert", item_id=f"doc-{{i}}", enqueued_at=time.time() - 2):
                    if i % 4 == 0:
                        raise ValueError(i)
            except ValueError:
                pass
        url = "http://127.0.0.1:{port}/metrics"
        print(urllib.request.urlopen(url, timeout=5).read().decode())
        platform_otel.shutdown()
        """,
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
    )
    assert result.rc == 0, result
    series = {}
    for line in result.stdout.splitlines():
        if line.startswith("pipeline_"):
            key, _, value = line.rpartition(" ")
            name, _, labels = key.partition("{")
            wanted = ("outcome", "queue", "le")
            label = ",".join(p for p in labels.rstrip("}").split(",") if p.startswith(wanted))
            series[f"{name}{{{label}}}"] = float(value)
    assert series['pipeline_items_total{outcome="failure"}'] == 3.0
    assert series['pipeline_items_total{outcome="success"}'] == 7.0
    assert series['pipeline_stage_duration_seconds_count{outcome="failure"}'] == 3.0
    assert series['pipeline_stage_duration_seconds_count{outcome="success"}'] == 7.0
    assert series["pipeline_lag_seconds_count{}"] == 10.0
    assert series['pipeline_lag_seconds_bucket{le="1.0"}'] == 0.0
    assert series['pipeline_lag_seconds_bucket{le="2.5"}'] == 10.0
    assert series['pipeline_queue_depth{queue="pending"}'] == 5.0
    assert series["pipeline_items_in_flight{}"] == 0.0


async def test_cancelled_task_counts_as_cancelled_not_failure(env: Env) -> None:
    """A stage whose asyncio task is cancelled counts outcome 'cancelled' and is not an error."""
    pipe = env.pipe()
    started = asyncio.Event()

    async def work() -> None:
        async with pipe.stage("convert"):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert env.counts() == {"cancelled": 1}
    (span,) = env.spans()
    assert span.status.status_code is StatusCode.UNSET


def test_threads_sharing_a_decorated_stage_count_exactly(env: Env) -> None:
    """Many threads running one decorated stage give exact counts and one span per call."""
    from concurrent.futures import ThreadPoolExecutor

    pipe = env.pipe()

    @pipe.stage("convert", item_id=lambda i: i)
    def convert(i: int) -> int:
        if i % 10 == 0:
            raise Boom(i)
        return i

    def call(i: int) -> str:
        try:
            convert(i)
        except Boom:
            return "failure"
        return "success"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(200)))
    assert results.count("failure") == 20
    assert env.counts() == {"success": 180, "failure": 20}
    assert len({s.attributes["pipeline.item.id"] for s in env.spans()}) == 200
    assert env.point("pipeline.items.in_flight", pipeline="ingest", stage="convert").value == 0
