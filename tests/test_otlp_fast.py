"""Fast OTLP span encoding: byte-for-byte different code, message-for-message the official result."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from platform_otel._fast.otlp import encode_spans_request
from tests.support.fixtures import requires_fast_path
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = requires_fast_path

REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
)


def _varied_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource.create({"service.name": "a", "n": 3}, "https://schema/1")),
        TracerProvider(resource=Resource.create({"service.name": "b", "ratio": 0.5})),
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    scoped = providers[0].get_tracer("lib.one", "1.2", schema_url="https://schema/2")
    bare = providers[0].get_tracer("lib.two")
    other = providers[1].get_tracer("lib.three", attributes={"scope.attr": True})
    remote_parent = set_span_in_context(NonRecordingSpan(REMOTE), Context())

    with scoped.start_as_current_span(
        "GET /items/{id}",
        kind=SpanKind.SERVER,
        context=remote_parent,
        attributes={
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "neg": -42,
            "big": 2**62,
            "f": 1.25,
            "flag": False,
            "tags": ("x", "y"),
            "ints": [1, -2, 3],
            "floats": [0.5],
            "bools": [True, False],
            "empty.string": "",
            "unicode": "héllo ✓",
            "long": "z" * 300,
        },
        links=[Link(REMOTE, {"link.attr": "v"})],
    ) as span:
        span.add_event("started", {"k": 1})
        span.add_event("no-attrs")
        with bare.start_as_current_span("child") as child:
            child.set_status(Status(StatusCode.ERROR, "it broke"))
            child.record_exception(ValueError("bad value"))
        with bare.start_as_current_span("ok-child") as ok:
            ok.set_status(StatusCode.OK)
    with other.start_as_current_span("", kind=SpanKind.CLIENT):
        pass
    for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        with other.start_as_current_span(f"kind {kind.name}", kind=kind):
            pass
    return list(exporter.get_finished_spans())


def test_fast_encoding_decodes_to_the_official_message() -> None:
    """Spans with every field kind (events, links, status, trace state, arrays, scopes, resources) encode to the official message."""
    spans = _varied_spans()
    assert len(spans) == 7
    fast = ExportTraceServiceRequest.FromString(encode_spans_request(spans))
    assert fast == encode_spans(spans)
    again = ExportTraceServiceRequest.FromString(encode_spans_request(spans))  # cached path
    assert again == fast


def test_fast_exporter_delivers_spans_over_grpc() -> None:
    """FastOTLPSpanExporter sends spans a real OTLP/gRPC receiver decodes with names, ids and attributes intact."""
    from platform_otel._fast.otlp import FastOTLPSpanExporter

    spans = _varied_spans()
    with OtlpReceiver("grpc") as receiver:
        exporter = FastOTLPSpanExporter(endpoint=receiver.endpoint, insecure=True, timeout=5)
        try:
            assert exporter.export(spans).name == "SUCCESS"
        finally:
            exporter.shutdown()
        got = receiver.wait_for(lambda r: r.spans() if len(r.spans()) == 7 else None)
    server = next(s for s in got if s.name == "GET /items/{id}")
    assert server.kind == "SERVER"
    assert server.trace_id == f"{REMOTE.trace_id:032x}"
    assert server.parent_span_id == f"{REMOTE.span_id:016x}"
    assert server.attributes["neg"] == -42
    assert server.attributes["tags"] == ["x", "y"]
    assert server.resource["service.name"] == "a"


def _varied_log_records() -> list[object]:
    import logging

    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "logs"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    std = logging.getLogger("test_otlp_fast.records")
    std.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    std.addHandler(handler)
    try:
        std.warning("plain %s", "text")
        with TracerProvider().get_tracer("t").start_as_current_span("in-span"):
            std.error("inside a span", extra={"user.count": 3, "ratio": 0.5, "ok": True})
        otel = provider.get_logger("direct.logger", "0.1", attributes={"scope.k": "v"})
        otel.emit(body={"structured": [1, "two"], "n": None}, severity_number=SeverityNumber.INFO)
        otel.emit(body=None, event_name="my.event", attributes={"tags": ("a", "b")})
        otel.emit(body=b"\x00\x01raw")
    finally:
        std.removeHandler(handler)
    return list(exporter.get_finished_logs())


def test_fast_log_encoding_decodes_to_the_official_message() -> None:
    """Log records (stdlib and direct, with trace context, structured and empty bodies, events) encode to the official message."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from platform_otel._fast.otlp import encode_logs_request

    records = _varied_log_records()
    assert len(records) == 5
    fast = ExportLogsServiceRequest.FromString(encode_logs_request(records))
    assert fast == encode_logs(records)


def test_fast_log_exporter_delivers_records_over_grpc() -> None:
    """FastOTLPLogExporter sends log records a real OTLP/gRPC receiver decodes, trace ids included."""
    from platform_otel._fast.otlp import FastOTLPLogExporter

    records = _varied_log_records()
    with OtlpReceiver("grpc") as receiver:
        exporter = FastOTLPLogExporter(endpoint=receiver.endpoint, insecure=True, timeout=5)
        try:
            assert exporter.export(records).name == "SUCCESS"
        finally:
            exporter.shutdown()
        got = receiver.wait_for(lambda r: r.logs() if len(r.logs()) == 5 else None)
    in_span = next(r for r in got if r.body == "inside a span")
    assert len(in_span.trace_id) == 32 and set(in_span.trace_id) != {"0"}
    assert in_span.attributes["user.count"] == 3


def test_fast_encoding_matches_with_dropped_attributes_events_and_links() -> None:
    """Spans over their limits (dropped attribute/event/link counts) still encode to the official message."""
    from opentelemetry.sdk.trace import SpanLimits

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        span_limits=SpanLimits(
            max_span_attributes=3,
            max_events=2,
            max_links=1,
            max_event_attributes=1,
            max_link_attributes=1,
            max_attribute_length=5,
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("limits")
    links = [Link(REMOTE, {"a": 1, "b": 2}), Link(REMOTE)]
    with tracer.start_as_current_span(
        "over", links=links, attributes={f"k{i}": "abcdefgh" for i in range(6)}
    ) as span:
        for i in range(4):
            span.add_event(f"e{i}", {"x": i, "y": i})
    spans = list(exporter.get_finished_spans())
    assert ExportTraceServiceRequest.FromString(encode_spans_request(spans)) == encode_spans(spans)


def test_queue_items_stay_correct_when_the_resource_scope_table_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past 256 (resource, scope) pairs, spans are queued as ``Encoded`` objects: same request."""
    from platform_otel._fast import otlp as _otlp_fast

    monkeypatch.setattr(_otlp_fast, "_pairs", [(object(), None)] * _otlp_fast._MAX_PAIRS)
    monkeypatch.setattr(_otlp_fast, "_pair_heads", {})
    spans = _varied_spans()
    items = [_otlp_fast.encode_span(span) for span in spans]
    assert all(isinstance(item, _otlp_fast.Encoded) for item in items)
    request = ExportTraceServiceRequest.FromString(encode_spans_request(items))
    assert request == encode_spans(spans)
