"""The lean hot paths (spans, histogram, log records) behave exactly like the SDK's.

platform-otel's per-request paths bypass the SDK's slow parts (``_lean_trace``,
``_lean_metrics``, ``_lean_logs``, encoding at span end). Each test here does the
same thing through the SDK and through the lean path and compares what a user
or an exporter sees.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from platform_otel._fast.logs import LeanLogEmitter
from platform_otel._fast.metrics import LeanHistogram
from platform_otel._fast.otlp import encode_log_record, encode_spans_request
from platform_otel._fast.queue import EncodingBatchSpanProcessor
from platform_otel._fast.trace import LeanSpan, lean_tracer
from tests.support.fixtures import requires_fast_path

pytestmark = requires_fast_path

REMOTE_SAMPLED = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1)
)
REMOTE_UNSAMPLED = SpanContext(
    0x1AF7651916CD43DD8448EB211C80319C, 0xC7AD6B7169203331, True, TraceFlags(0)
)
LIMITS = SpanLimits(max_span_attributes=6, max_span_attribute_length=8, max_events=2, max_links=1)


def _provider(**kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lean"}), **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _exercise(start: Any) -> None:
    """The same span life through either tracer: limits, invalid values, events, status."""
    span = start({"a": 1, "s": "short"})
    span.set_attribute("long", "x" * 50)  # truncated to 8
    span.set_attribute("seq", ["a", "b"])
    span.set_attribute("flag", True)
    span.set_attribute("f", 0.5)
    span.set_attribute("over.limit", 1)  # 7th attribute: dropped
    span.set_attribute("a", 2)  # overwrite, not a new key
    span.add_event("one", {"k": "v"})
    span.record_exception(ValueError("bad"))
    span.add_event("three")  # over max_events: dropped
    span.add_link(REMOTE_SAMPLED, {"l": 1})
    span.add_link(REMOTE_UNSAMPLED)  # over max_links: dropped
    span.set_status(Status(StatusCode.ERROR, "broken"))
    span.set_status(StatusCode.UNSET)  # ignored
    span.update_name("renamed")
    span.end()
    span.set_attribute("after.end", 1)  # ignored
    span.end()  # second end: no second export


def _comparable(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent,
        "trace_flags": span.context.trace_flags,
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [(link.context, dict(link.attributes or {})) for link in span.links],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope,
    }


def _strip_stacktrace(fields: dict[str, Any]) -> dict[str, Any]:
    for _, attributes in fields["events"]:
        attributes.pop("exception.stacktrace", None)  # differs by the frames that recorded it
    return fields


def test_lean_span_reads_like_an_sdk_span() -> None:
    """Limits, truncation, invalid values, events, links, status and name end up as the SDK's."""
    sdk_provider, sdk_spans = _provider(span_limits=LIMITS)
    lean_provider, lean_spans = _provider(span_limits=LIMITS)
    sdk = sdk_provider.get_tracer("scope.x", "1.0")
    lean = lean_tracer(lean_provider.get_tracer("scope.x", "1.0"))
    assert lean is not None
    parent = set_span_in_context(NonRecordingSpan(REMOTE_SAMPLED), Context())

    _exercise(lambda attrs: sdk.start_span("op", parent, SpanKind.SERVER, attributes=attrs))
    _exercise(lambda attrs: lean.start_span("op", parent, SpanKind.SERVER, dict(attrs)))

    [expected], [got] = sdk_spans.get_finished_spans(), lean_spans.get_finished_spans()
    assert isinstance(got, LeanSpan)
    assert _strip_stacktrace(_comparable(got)) == _strip_stacktrace(_comparable(expected))
    assert got.context.trace_id == REMOTE_SAMPLED.trace_id
    assert got.attributes["long"] == "x" * 8
    # The SDK's rule at a full limit: the oldest entry makes room ("a" was re-set after eviction).
    assert list(got.attributes) == ["long", "seq", "flag", "f", "over.limit", "a"]
    assert got.dropped_attributes == 2 and got.dropped_events == 1 and got.dropped_links == 1


def test_name_and_two_attributes_in_one_call_follow_the_sdk_rules() -> None:
    """``set_name_and_scalars`` (the server span's route and status at the end of a request)
    ends as update_name + set_attribute would: without limits, and at length/count limits."""
    for limits in (SpanLimits(), LIMITS, SpanLimits(max_span_attributes=3)):
        sdk_provider, sdk_spans = _provider(span_limits=limits)
        lean_provider, lean_spans = _provider(span_limits=limits)
        sdk = sdk_provider.get_tracer("scope.x")
        lean = lean_tracer(lean_provider.get_tracer("scope.x"))
        assert lean is not None
        first = {"http.request.method": "GET", "url.path": "/items/42", "a": 1}
        expected = sdk.start_span("GET", Context(), SpanKind.SERVER, attributes=first)
        expected.update_name("GET /items/{item_id}")
        expected.set_attribute("http.route", "/items/{item_id}")
        expected.set_attribute("http.response.status_code", 200)
        expected.end()
        got = lean.start_span("GET", Context(), SpanKind.SERVER, dict(first))
        assert isinstance(got, LeanSpan)
        got.set_name_and_scalars(
            "GET /items/{item_id}", "http.route", "/items/{item_id}",
            "http.response.status_code", 200,
        )  # fmt: skip
        got.end()
        got.set_name_and_scalars("late", "x", 1, "y", None)  # after end: ignored
        [sdk_span], [lean_span] = sdk_spans.get_finished_spans(), lean_spans.get_finished_spans()
        assert _comparable(lean_span) == _comparable(sdk_span), limits
    skipped = lean.start_span("GET", Context(), SpanKind.SERVER, {})
    skipped.set_name_and_scalars(None, "http.route", None, "http.response.status_code", 404)
    assert skipped.name == "GET" and dict(skipped.attributes) == {"http.response.status_code": 404}


def test_lean_span_encodes_like_an_sdk_span() -> None:
    """Both OTLP encoders turn a lean span into the message they make of the same SDK span."""
    lean_provider, lean_spans = _provider(span_limits=LIMITS)
    lean = lean_tracer(lean_provider.get_tracer("scope.x", "1.0"))
    assert lean is not None
    _exercise(lambda attrs: lean.start_span("op", Context(), SpanKind.SERVER, dict(attrs)))
    spans = list(lean_spans.get_finished_spans())
    assert ExportTraceServiceRequest.FromString(encode_spans_request(spans)) == encode_spans(spans)


@pytest.mark.parametrize(
    ("sampler", "parent", "recorded", "sampled"),
    [
        (ParentBased(TraceIdRatioBased(1.0)), None, True, True),
        (ParentBased(TraceIdRatioBased(0.0)), None, False, False),
        (None, REMOTE_SAMPLED, True, True),  # default sampler, inline decision
        (None, REMOTE_UNSAMPLED, False, False),
        (ParentBased(TraceIdRatioBased(0.0)), REMOTE_SAMPLED, True, True),
    ],
)
def test_lean_tracer_samples_like_the_sdk(
    sampler: Any, parent: SpanContext | None, recorded: bool, sampled: bool
) -> None:
    """Default and configured samplers give the SDK's decision, trace id and parent."""
    provider, spans = _provider(**({"sampler": sampler} if sampler else {}))
    lean = lean_tracer(provider.get_tracer("s"))
    assert lean is not None
    context = set_span_in_context(NonRecordingSpan(parent), Context()) if parent else Context()
    span = lean.start_span("op", context, SpanKind.SERVER, {})
    assert span.is_recording() is recorded
    assert span.get_span_context().trace_flags.sampled is sampled
    assert span.get_span_context().is_valid
    if parent is not None:
        assert span.get_span_context().trace_id == parent.trace_id
    span.end()
    exported = spans.get_finished_spans()
    assert len(exported) == (1 if sampled else 0)
    if exported and parent is not None:
        assert exported[0].parent == parent


def test_lean_tracer_calls_every_processor_and_declines_foreign_tracers() -> None:
    """User processors see on_start and one on_end; a no-op tracer gets no lean tracer."""
    from opentelemetry.trace import NoOpTracerProvider

    provider, _ = _provider()
    seen: list[str] = []

    class Recorder(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(f"start {span.name}")

        def on_end(self, span: Any) -> None:
            seen.append(f"end {span.name}")

    provider.add_span_processor(Recorder())
    lean = lean_tracer(provider.get_tracer("s"))
    assert lean is not None
    span = lean.start_span("op", Context(), SpanKind.SERVER, {})
    span.end()
    span.end()
    assert seen == ["start op", "end op"]
    assert lean_tracer(NoOpTracerProvider().get_tracer("s")) is None


class _Capture(SpanExporter):
    accepts_encoded = True

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


def test_spans_encoded_at_end_make_the_same_export_request() -> None:
    """Encoding at end (lean spans and SDK spans alike) gives the official export message."""
    capture = _Capture()
    provider = TracerProvider(resource=Resource.create({"service.name": "enc"}))
    provider.add_span_processor(EncodingBatchSpanProcessor(capture))  # type: ignore[arg-type]
    lean = lean_tracer(provider.get_tracer("lean.scope"))
    assert lean is not None and lean.direct_queue is not None  # the shortcut is taken
    ended: list[Any] = []
    for i in range(3):
        span = lean.start_span(f"GET /{i}", Context(), SpanKind.SERVER, {"http.route": f"/{i}"})
        span.set_attribute("http.response.status_code", 200)
        span.end()
        ended.append(span)
    with provider.get_tracer("sdk.scope").start_as_current_span("sdk child") as sdk_span:
        sdk_span.set_attribute("n", 1)
    provider.force_flush()
    items = [item for batch in capture.batches for item in batch]
    assert len(items) == 4 and all(type(item) is bytes for item in items)
    # Queued spans are plain bytes: nothing for the garbage collector to track while they wait.
    assert not any(gc.is_tracked(item) for item in items)
    readable = [*ended, *[s for s in [sdk_span] if isinstance(s, ReadableSpan)]]
    request = ExportTraceServiceRequest.FromString(encode_spans_request(items))
    expected = encode_spans(readable[:3])
    got_lean = [
        s
        for rs in request.resource_spans
        for ss in rs.scope_spans
        if ss.scope.name == "lean.scope"
        for s in ss.spans
    ]
    assert got_lean == list(expected.resource_spans[0].scope_spans[0].spans)
    provider.shutdown()


# -- histogram -------------------------------------------------------------------------

BOUNDS = (0.005, 0.01, 0.1, 1.0)


def _meter_provider(**kwargs: Any) -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader(**kwargs)
    return MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "h"})
    ), reader


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_lean_histogram_collects_what_the_sdk_histogram_collects() -> None:
    """Counts, buckets, sum, min, max and attributes equal the SDK's for the same values."""
    values = [0.001, 0.005, 0.0051, 0.2, 3.0, -1.0, float("nan"), 0.05]
    attrs = {"http.route": "/a", "http.response.status_code": 200}
    sdk_mp, sdk_reader = _meter_provider()
    sdk = sdk_mp.get_meter("m").create_histogram(
        "d", unit="s", explicit_bucket_boundaries_advisory=list(BOUNDS)
    )
    lean_mp, lean_reader = _meter_provider()
    lean = LeanHistogram.create(lean_mp.get_meter("m"), "d", "s", "", BOUNDS)
    assert lean is not None
    for value in values:
        sdk.record(value, attrs)
        lean.record(value, ("/a", 200), attrs)
    [expected], [got] = _points(sdk_reader, "d"), _points(lean_reader, "d")
    for field in ("attributes", "count", "sum", "bucket_counts", "explicit_bounds", "min", "max"):
        assert (
            list(getattr(got, field)) == list(getattr(expected, field))
            if field in ("bucket_counts", "explicit_bounds")
            else getattr(got, field) == getattr(expected, field)
        ), field
    assert got.count == 6  # negative and NaN dropped, as the SDK drops them


def test_lean_histogram_exemplars_point_at_sampled_spans_only() -> None:
    """trace_based exemplars: the sampled request's trace, none for an unsampled one."""
    mp, reader = _meter_provider()
    lean = LeanHistogram.create(mp.get_meter("m"), "d", "s", "", BOUNDS)
    assert lean is not None
    lean.record(0.002, ("k",), {"r": "/"}, REMOTE_UNSAMPLED)
    lean.record(0.5, ("k",), {"r": "/"}, REMOTE_SAMPLED)
    [point] = _points(reader, "d")
    assert [(e.trace_id, e.span_id, e.value) for e in point.exemplars] == [
        (REMOTE_SAMPLED.trace_id, REMOTE_SAMPLED.span_id, 0.5)
    ]
    lean.record(0.6, ("k",), {"r": "/"})
    [again] = _points(reader, "d")
    assert again.count == 3 and not again.exemplars  # nothing new sampled since the last collection


def test_lean_histogram_is_bounded_and_steps_aside_when_not_equivalent() -> None:
    """Beyond 2000 attribute sets: the overflow point. Views or delta temporality: the SDK instrument."""
    mp, reader = _meter_provider()
    lean = LeanHistogram.create(mp.get_meter("m"), "d", "s", "", BOUNDS)
    assert lean is not None
    for i in range(2100):
        lean.record(0.01, (i,), {"i": i})
    points = _points(reader, "d")
    assert len(points) == 2000
    overflow = [p for p in points if p.attributes.get("otel.metric.overflow")]
    assert len(overflow) == 1 and overflow[0].count == 101

    with_view = MeterProvider(
        metric_readers=[InMemoryMetricReader()], views=[View(instrument_name="other")]
    )
    assert LeanHistogram.create(with_view.get_meter("m"), "d", "s", "", BOUNDS) is None
    from opentelemetry.sdk.metrics import Histogram

    delta_mp, _ = _meter_provider(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    assert LeanHistogram.create(delta_mp.get_meter("m"), "d", "s", "", BOUNDS) is None


def test_lean_histogram_reaches_the_prometheus_endpoint() -> None:
    """The Prometheus reader renders the lean histogram like any SDK histogram."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    mp = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    lean = LeanHistogram.create(mp.get_meter("m"), "http.server.request.duration", "s", "", BOUNDS)
    assert lean is not None
    lean.record(0.05, ("GET", "/x"), {"http.request.method": "GET", "http.route": "/x"})
    text = generate_latest(registry).decode()
    assert (
        'http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/x",le="0.1"'
        in text
    )
    assert (
        'http_server_request_duration_seconds_count{http_request_method="GET",http_route="/x"'
        in text
    )


# -- logs ---------------------------------------------------------------------------------


def test_encoded_log_record_is_the_official_message() -> None:
    """A log record encoded from its fields equals the official encoding of the SDK record."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    resource = Resource.create({"service.name": "logs"})
    scope = InstrumentationScope("uvicorn.access")
    attributes = {"code.file.path": "/app/x.py", "code.function.name": "f", "code.line.number": 3}
    fields = {
        "timestamp": 1_700_000_000_000_000_000,
        "observed_timestamp": 1_700_000_000_000_000_123,
    }
    encoded = encode_log_record(
        resource,
        scope,
        severity_number=SeverityNumber.WARN.value,
        severity_text="WARN",
        body='127.0.0.1:5000 - "GET / HTTP/1.1" 200 ✓',
        attributes=attributes,
        dropped_attributes=0,
        span_context=REMOTE_SAMPLED,
        **fields,
    )
    record = LogRecord(
        context=set_span_in_context(NonRecordingSpan(REMOTE_SAMPLED), Context()),
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body='127.0.0.1:5000 - "GET / HTTP/1.1" 200 ✓',
        attributes=attributes,
        **fields,
    )
    readable = ReadableLogRecord(log_record=record, resource=resource, instrumentation_scope=scope)
    from platform_otel._fast.otlp import encode_logs_request

    assert ExportLogsServiceRequest.FromString(encode_logs_request([encoded])) == encode_logs(
        [readable]
    )


def test_lean_log_emitter_steps_aside_when_processors_change() -> None:
    """A processor added after the emitter was built: emit() declines and the SDK path is used."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "logs"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    emitter = LeanLogEmitter.create(provider)
    assert emitter is not None
    logger = provider.get_logger("app")
    fields = {
        "timestamp": 1,
        "observed_timestamp": 2,
        "span_context": REMOTE_SAMPLED,
        "severity_number": SeverityNumber.INFO,
        "severity_text": "INFO",
        "body": "hello",
        "attributes": {"k": "v"},
    }
    assert emitter.emit(logger, **fields) is True
    provider.force_flush()
    [record] = exporter.get_finished_logs()
    assert (
        record.log_record.body == "hello" and record.log_record.trace_id == REMOTE_SAMPLED.trace_id
    )
    assert dict(record.log_record.attributes or {}) == {"k": "v"}
    assert record.resource.attributes["service.name"] == "logs"
    provider.add_log_record_processor(SimpleLogRecordProcessor(InMemoryLogRecordExporter()))
    assert emitter.emit(logger, **fields) is False
    assert LeanLogEmitter.create(provider) is None  # not every processor is a batch processor


def test_lean_histogram_shares_its_meters_scope_with_sdk_instruments_on_the_wire() -> None:
    """A lean histogram and SDK instruments of the same meter reach OTLP together: one
    ScopeMetrics for the scope (a second one for the same scope replaces the first there)."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("shared.scope")
    meter.create_histogram("sdk.histogram").record(1.0, {"k": "v"})
    meter.create_counter("sdk.counter").add(1)
    lean = LeanHistogram.create(meter, "lean.histogram", "s", "d", (0.1, 1.0))
    assert lean is not None
    lean.record(0.5, ("v",), {"k": "v"})
    request = encode_metrics(reader.get_metrics_data())
    scopes = [sm for rm in request.resource_metrics for sm in rm.scope_metrics]
    assert [sm.scope.name for sm in scopes] == ["shared.scope"]
    assert sorted(m.name for m in scopes[0].metrics) == [
        "lean.histogram",
        "sdk.counter",
        "sdk.histogram",
    ]
