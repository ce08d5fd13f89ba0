"""The optional C span encoder (``_speedups``) writes exactly the pure-Python encoder's bytes."""

from __future__ import annotations

import enum
import math
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from platform_otel._fast import otlp as _otlp_fast
from platform_otel._fast.trace import lean_tracer
from tests.support.fixtures import requires_fast_path
from tests.test_otlp_fast import _varied_spans

pytestmark = requires_fast_path


@pytest.fixture(autouse=True)
def _restore_speedups() -> Iterator[None]:
    if not _otlp_fast.use_speedups(True) and not os.environ.get("PLATFORM_OTEL_REQUIRE_SPEEDUPS"):
        # An install without a C compiler: the pure-Python encoder is all there is.
        pytest.skip("platform_otel._speedups was not built (no C compiler at install time)")
    yield
    _otlp_fast.use_speedups(True)


def _both(spans: list[Any]) -> tuple[bytes, bytes]:
    """(C encoder's request, pure-Python encoder's request) for the same spans."""
    assert _otlp_fast.use_speedups(True), "the C extension was not built (needs a C compiler)"
    fast = _otlp_fast.encode_spans_request(spans)
    _otlp_fast.use_speedups(False)
    python = _otlp_fast.encode_spans_request(spans)
    return fast, python


class Colour(enum.IntEnum):
    RED = 1


_PROVIDER = TracerProvider()
_EXPORTER = InMemorySpanExporter()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


def _lean_spans(attribute_sets: list[dict[str, Any]], parent: Context | None = None) -> list[Any]:
    """Lean server spans (one provider: one resource, as in a real batch)."""
    _EXPORTER.clear()
    lean = lean_tracer(_PROVIDER.get_tracer("speedups", "1.0"))
    assert lean is not None
    for i, attributes in enumerate(attribute_sets):
        span = lean.start_span(f"op {i}", parent or Context(), SpanKind.SERVER, dict(attributes))
        span.end()
    return list(_EXPORTER.get_finished_spans())


def test_c_encoder_matches_python_encoder_and_official_message() -> None:
    """SDK spans with events, links, status, trace state, arrays and several scopes: same bytes."""
    spans = _varied_spans()
    fast, python = _both(spans)
    assert fast == python
    assert ExportTraceServiceRequest.FromString(fast) == encode_spans(spans)


def test_c_encoder_edge_values_match() -> None:
    """Values the C path encodes itself, and those it hands back to Python, give the same bytes."""
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1")]),
    )
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    attribute_sets: list[dict[str, Any]] = [
        {},
        {"s": "", "u": "héllo ✓ 漢字", "long": "x" * 70_000},  # 3-byte length varint
        {"i0": 0, "neg": -1, "min": -(2**63), "max": 2**63 - 1, "t": True, "f": False},
        {"f": 0.1, "inf": math.inf, "ninf": -math.inf, "nan": math.nan, "negzero": -0.0},
        {"huge": 2**64},  # beyond int64: the Python encoder's business
        {"seq": ("a", "b"), "ints": [1, 2]},  # arrays: Python
        {"enum": Colour.RED},  # an int subclass: Python
        {f"k{i}": "v" * 40 for i in range(200)},  # far beyond the C stack buffer
    ]
    spans = _lean_spans(attribute_sets)
    spans += _lean_spans(
        [{"a": 1}], parent=set_span_in_context(NonRecordingSpan(remote), Context())
    )  # a remote parent with a trace state: Python
    fast, python = _both(spans)
    assert fast == python
    # NaN never equals itself, so protobuf messages holding one never compare equal.
    comparable = [s for s in spans if not any(v != v for v in s.attributes.values())]
    assert len(comparable) == len(spans) - 1
    _otlp_fast.use_speedups(True)
    assert ExportTraceServiceRequest.FromString(
        _otlp_fast.encode_spans_request(comparable)
    ) == encode_spans(comparable)


def test_c_encoder_random_attributes_match() -> None:
    """Random scalar attributes (types, signs, lengths, unicode) over many spans."""
    rng = random.Random(20261127)
    alphabet = "abcxyz-_.é✓漢\U0001f600"

    def value() -> Any:
        kind = rng.randrange(4)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.randint(-(2**63), 2**63 - 1) >> rng.randrange(64)
        return rng.uniform(-1e12, 1e12)

    attribute_sets = [
        {f"key.{j}": value() for j in range(rng.randrange(0, 20))} for _ in range(300)
    ]
    spans = _lean_spans(attribute_sets)
    fast, python = _both(spans)
    assert fast == python
    assert ExportTraceServiceRequest.FromString(fast) == encode_spans(spans)


def test_python_encoder_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """PLATFORM_OTEL_OTLP_ENCODER=python turns the C encoder off for init()'s exporters."""
    from platform_otel import _config, _exporters

    monkeypatch.setenv("PLATFORM_OTEL_OTLP_ENCODER", "python")
    settings = _config.load_settings()
    assert settings.otlp_encoder == "python"
    exporters = _exporters.make_exporters("traces", settings)
    assert exporters and exporters[0].accepts_encoded  # still the fast wire encoder
    assert _otlp_fast._c_span_message is None
    monkeypatch.setenv("PLATFORM_OTEL_OTLP_ENCODER", "fast")
    _exporters.make_exporters("traces", _config.load_settings())
    assert _otlp_fast._c_span_message is not None


def test_queue_items_are_the_same_bytes_from_both_encoders_and_make_the_official_request() -> None:
    """A span queued at end is one plain bytes object, the same from C and Python, and the
    export request built from such items is the official encoder's."""
    spans = _lean_spans([{"http.route": f"/{i}", "n": i, "ok": i % 2 == 0} for i in range(5)])
    lean = lean_tracer(_PROVIDER.get_tracer("speedups", "1.0"))
    assert lean is not None
    rare = lean.start_span("rare", Context(), SpanKind.INTERNAL, {"k": "v"})
    rare.add_event("retry", {"attempt": 2})
    rare.set_status(StatusCode.ERROR, "boom")  # status, events: the encoder's other tail
    rare.end()
    spans.append(rare)
    fast_items = [_otlp_fast.encode_lean_span(s) for s in spans]
    _otlp_fast.use_speedups(False)
    python_items = [_otlp_fast.encode_lean_span(s) for s in spans]
    assert all(type(item) is bytes for item in fast_items)
    assert fast_items == python_items
    request = _otlp_fast.encode_spans_request(fast_items)
    assert ExportTraceServiceRequest.FromString(request) == encode_spans(spans)


def test_head_is_written_before_the_span_entry_and_bounded() -> None:
    from platform_otel._fast import _encode as _speedups

    ctx = SpanContext(1, 2, False, TraceFlags(1))
    args = (ctx, None, "op", 1, 10, 20, {"k": "v"}, b"\x7a\x00")
    plain = _speedups.span_message(*args)
    assert plain is not None and _speedups.span_message(*args, b"\x07") == b"\x07" + plain
    with pytest.raises(ValueError):
        _speedups.span_message(*args, b"x" * 17)


def test_lean_span_end_queues_the_encoders_item_for_common_and_uncommon_spans() -> None:
    """LeanSpan.end encodes common spans inline (one C call); spans with a status, events,
    links or dropped attributes go to the general encoder. Either way the queued item is
    encode_lean_span's, byte for byte, from C and from Python."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    from platform_otel._fast.queue import EncodingBatchSpanProcessor

    class Discard:
        def export(self, spans: Any) -> Any:
            return None

        def shutdown(self) -> None:
            pass

    def run() -> tuple[list[Any], list[Any]]:
        provider = TracerProvider(
            resource=Resource.create({"service.name": "inline"}),
            span_limits=SpanLimits(max_span_attributes=4),
        )
        provider.add_span_processor(EncodingBatchSpanProcessor(Discard()))  # type: ignore[arg-type]
        lean = lean_tracer(provider.get_tracer("inline.scope", "1.0"))
        assert lean is not None and lean.direct_queue is not None
        queued: list[Any] = []
        lean.emit = queued.append  # type: ignore[method-assign]
        top = SpanContext(2**128 - 1, 2**64 - 1, False, TraceFlags(1))  # every id bit set
        child_of_top = set_span_in_context(NonRecordingSpan(top), Context())
        spans = []
        for i, parent in enumerate([Context(), child_of_top, Context(), Context(), Context()]):
            span = lean.start_span(f"op {i}", parent, SpanKind.SERVER, {"a": i, "s": "漢字"})
            if i == 2:
                span.set_status(StatusCode.ERROR, "boom")
            if i == 3:
                span.add_event("retry", {"attempt": 2})
            if i == 4:
                for k in range(6):  # two over the limit of 4: dropped attributes
                    span.set_attribute(f"k{k}", k)
            span.end()
            spans.append(span)
        provider.shutdown()
        return queued, spans

    fast, fast_spans = run()
    _otlp_fast.use_speedups(False)
    python, python_spans = run()
    assert [s._uncommon for s in fast_spans] == [False, False, True, True, True]
    assert all(type(item) is bytes for item in fast + python)

    # Each item is the pure-Python encode_lean_span's for its span.
    assert fast == [_otlp_fast.encode_lean_span(s) for s in fast_spans]
    assert python == [_otlp_fast.encode_lean_span(s) for s in python_spans]
    request = _otlp_fast.encode_spans_request(fast)
    assert ExportTraceServiceRequest.FromString(request) == encode_spans(fast_spans)
