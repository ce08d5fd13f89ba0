"""Fast OTLP span encoding: protobuf wire bytes written directly, repeated parts cached.

Why: the official encoder (``opentelemetry.exporter.otlp.proto.common``) builds a
protobuf object per span, per attribute and per value (about 40 µs for a
10-attribute HTTP server span on the benchmark machine). It runs on the
exporter thread but holds the GIL, so in a one-worker web server it costs
request throughput directly: it was the largest single item in the profile of
the instrumented FastAPI hot path. This module writes the same
``ExportTraceServiceRequest`` as wire bytes (decoded, the message is equal to
the official encoder's; a test checks it) and caches the encoding of repeated
(key, value) attribute pairs, resources and instrumentation scopes.

Log records get the same treatment (``encode_logs_request``): with uvicorn's
access log on, every request also exports one log record.

``FastOTLPSpanExporter`` / ``FastOTLPLogExporter`` are the official OTLP/gRPC
exporters (same arguments, retries, reconnection, environment variables) sending
these bytes through a raw gRPC method instead of serialising protobuf objects.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

__all__ = [
    "Encoded",
    "FastOTLPLogExporter",
    "FastOTLPSpanExporter",
    "encode_lean_span",
    "encode_log_record",
    "encode_logs_request",
    "encode_span",
    "encode_spans_request",
    "pair_head",
    "use_speedups",
]

if TYPE_CHECKING:  # built lazily by __getattr__ (they need grpc)
    FastOTLPSpanExporter: type
    FastOTLPLogExporter: type

_CACHE_LIMIT = 8192


def _load_c_encoder() -> Any:
    """``_speedups.span_message`` when the optional C extension was built, else None."""
    try:
        from . import _encode as _speedups
    except ImportError:
        return None
    return _speedups.span_message


# The optional C encoder (``_speedups.c``): the same bytes for the common span, in one buffer.
# (LeanSpan.end calls it directly for its common spans.)
_c_span_message: Any = _load_c_encoder()


def use_speedups(enabled: bool) -> bool:
    """Turn the C encoder on or off (``PLATFORM_OTEL_OTLP_ENCODER=python``); True if it is on."""
    global _c_span_message
    _c_span_message = _load_c_encoder() if enabled else None
    return _c_span_message is not None


# (field tag, key, value type, value) -> encoded KeyValue field, for bool/int/float values
_kv_cache: dict[tuple[int, str, type, Any], bytes] = {}
# id -> (object kept alive, encoding): resources and instrumentation scopes
_obj_cache: dict[int, tuple[object, bytes]] = {}
# (severity number, severity text) -> the encoded severity fields of a log record
_severity_cache: dict[tuple[int, str], bytes] = {}
# Per field tag (Span.attributes 0x4A, LogRecord.attributes 0x32): (key, value) -> encoded
# KeyValue field, for str values
_str_cache: dict[int, dict[tuple[str, str], bytes]] = {0x4A: {}, 0x32: {}}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# Span.flags (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK = 0x100, ..._IS_REMOTE_MASK = 0x200)
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)
# SDK SpanKind.value (INTERNAL=0 ... CONSUMER=4) -> Span.kind field (6) with the OTLP enum value
_KIND_BYTES = {v: b"\x30" + bytes((v + 1,)) for v in range(5)}


class Encoded:
    """A span or log record already encoded (its ``Span``/``LogRecord`` field bytes).

    Batch processors queue encoded items instead of the objects when the exporter is
    this module's: each item is encoded once, by the thread that ended it, while its
    data is still in the CPU cache. Measured in a uvicorn worker under load, encoding
    the same spans later on the exporter thread cost several times more CPU.

    An encoded item is normally one plain ``bytes`` object (see :func:`pair_head`);
    this class is the fallback once more than 256 (resource, scope) pairs exist.
    """

    __slots__ = ("data", "instrumentation_scope", "resource")

    def __init__(self, resource: Any, instrumentation_scope: Any, data: bytes) -> None:
        self.resource = resource
        self.instrumentation_scope = instrumentation_scope
        self.data = data


# Queued items are plain ``bytes``: a one-byte head, the index of the item's (resource,
# scope) pair in _pairs, then the encoded Span/LogRecord entry. Why not an object holding
# resource, scope and bytes: every such object is tracked by the garbage collector and
# lives in the queue until its batch is exported, so each request left one more object
# to count towards a collection; plain bytes are never tracked (docs/performance.md).
_pairs: list[tuple[Any, Any]] = []  # strong references: ids stay unique while registered
_pair_heads: dict[tuple[int, int], bytes] = {}
_pairs_lock = threading.Lock()
_MAX_PAIRS = 256


def pair_head(resource: Any, scope: Any) -> bytes | None:
    """The one-byte head naming (resource, scope) in queued items; None once 256 pairs exist."""
    key = (id(resource), id(scope))
    head = _pair_heads.get(key)
    if head is None:
        with _pairs_lock:
            head = _pair_heads.get(key)
            if head is None:
                if len(_pairs) >= _MAX_PAIRS:
                    return None
                head = bytes((len(_pairs),))
                _pairs.append((resource, scope))
                _pair_heads[key] = head
    return head


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (tag already shifted, wire type 2)."""
    n = len(payload)
    return bytes((tag, n)) + payload if n < 0x80 else bytes((tag,)) + _varint(n) + payload


def _ld_head(tag: int, n: int) -> bytes:
    """The tag and length of a length-delimited field of ``n`` bytes."""
    return bytes((tag, n)) if n < 0x80 else bytes((tag,)) + _varint(n)


def _str(tag: int, text: str) -> bytes:
    return _ld(tag, text.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """AnyValue message body."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _str(0x0A, value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            # Not representable in OTLP's int64: the official encoder drops the attribute.
            raise ValueError(f"integer attribute value out of int64 range: {value}")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _ld(0x3A, value)
    if isinstance(value, Sequence):
        return _ld(0x2A, b"".join(_ld(0x0A, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _ld(0x32, b"".join(_ld(0x0A, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode attribute value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    """KeyValue message body."""
    return _str(0x0A, key) + _ld(0x12, _any_value(value))


def _cached_attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    """A repeated KeyValue field, with a bounded cache of encoded scalar pairs."""
    if not attributes:
        return b""
    # BoundedAttributes is a MutableMapping whose items() goes through the ABC
    # (__iter__ + __getitem__ per key); its backing dict iterates several times faster.
    backing = attributes if type(attributes) is dict else getattr(attributes, "_dict", None)
    parts: list[bytes] = []
    append = parts.append
    str_cache = _str_cache[tag]
    for key, value in (backing if isinstance(backing, dict) else attributes).items():
        if (
            type(value) is str
        ):  # most values; a str never equals another type: (key, value) is enough
            enc = str_cache.get((key, value))
            if enc is None:
                enc = _ld(tag, _key_value(key, value))
                if len(str_cache) < _CACHE_LIMIT:
                    str_cache[(key, value)] = enc
        else:
            enc = _other_attribute(tag, key, value)
        append(enc)
    return b"".join(parts)


def _other_attribute(tag: int, key: str, value: Any) -> bytes:
    """A non-str attribute; nothing for a value OTLP cannot carry (as the official encoder)."""
    cacheable = isinstance(value, (int, float, bool))
    if cacheable:  # 1 == 1.0 == True: the type is part of the key
        ck = (tag, key, type(value), value)
        enc = _kv_cache.get(ck)
        if enc is not None:
            return enc
    try:
        enc = _ld(tag, _key_value(key, value))
    except (TypeError, ValueError):
        return b""
    if cacheable and len(_kv_cache) < _CACHE_LIMIT:
        _kv_cache[ck] = enc
    return enc


def _cached(obj: object, build: Any) -> bytes:
    hit = _obj_cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    enc: bytes = build(obj)
    if len(_obj_cache) < 256:
        _obj_cache[id(obj)] = (obj, enc)
    return enc


def _resource(resource: Any) -> bytes:
    return _ld(0x0A, _attributes_plain(0x0A, resource.attributes))


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _ld(0x0A, b"")
    body = _str(0x0A, scope.name) if scope.name else b""
    if scope.version:
        body += _str(0x12, scope.version)
    body += _attributes_plain(0x1A, scope.attributes)
    return _ld(0x0A, body)


def _attributes_plain(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join(
        _ld(tag, _key_value(k, v)) if type(v) is str else _other_attribute(tag, k, v)
        for k, v in attributes.items()
    )


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    body = b""
    if status.description:
        body += _str(0x12, status.description)
    code = status.status_code.value
    if code:
        body += b"\x18" + _varint(code)
    return _ld(0x7A, body)


_pack_times = struct.Struct("<BQBQ").pack  # start_time (field 7) and end_time (field 8), fixed64
_STATUS_UNSET = b"\x7a\x00"


def _ids(ctx: Any, parent: Any) -> list[bytes]:
    """The Span fields trace_id, span_id, trace_state and parent_span_id."""
    parts = [
        b"\x0a\x10"
        + ctx.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + ctx.span_id.to_bytes(8, "big")
    ]
    trace_state = ctx.trace_state
    if trace_state:
        parts.append(_str(0x1A, ",".join(f"{k}={v}" for k, v in trace_state.items())))
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    return parts


def _tail(
    dropped_attributes: int,
    events: Any,
    dropped_events: int,
    links: Any,
    dropped_links: int,
    status: Any,
) -> bytes:
    """The Span fields between attributes and flags: dropped counts, events, links, status."""
    if not (dropped_attributes or events or dropped_events or links or dropped_links):
        if status is None:
            return b""
        if not (status.description or status.status_code._value_):
            return _STATUS_UNSET  # almost every span
    parts = []
    if dropped_attributes:
        parts.append(b"\x50" + _varint(dropped_attributes))
    if events:
        parts.extend(_event(event) for event in events)
    if dropped_events:
        parts.append(b"\x60" + _varint(dropped_events))
    if links:
        parts.extend(_link(link) for link in links)
    if dropped_links:
        parts.append(b"\x70" + _varint(dropped_links))
    if status is not None:
        parts.append(
            _status(status) if status.description or status.status_code._value_ else _STATUS_UNSET
        )
    return b"".join(parts)


def _span_message(
    ctx: Any,
    parent: Any,
    name: str,
    kind: int,
    start: int | None,
    end: int | None,
    attributes: Any,
    tail: bytes,
    head: bytes = b"",
) -> bytes:
    """``head`` and the ``spans`` entry of a ScopeSpans message (tag, length, Span) from a
    span's fields."""
    c_encode = _c_span_message
    if c_encode is not None:
        backing = attributes if type(attributes) is dict else getattr(attributes, "_dict", None)
        if type(backing) is dict:
            out = c_encode(ctx, parent, name, kind, start, end, backing, tail, head)
            if out is not None:
                return out  # type: ignore[no-any-return]
    parts = _ids(ctx, parent)
    if name:
        parts.append(_str(0x2A, name))
    parts.append(_KIND_BYTES[kind])
    if start and end:
        parts.append(_pack_times(0x39, start, 0x41, end))
    else:
        if start:
            parts.append(b"\x39" + _pack_fixed64(start))
        if end:
            parts.append(b"\x41" + _pack_fixed64(end))
    parts.append(_cached_attributes(0x4A, attributes))
    parts.append(tail)
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return head + _ld(0x12, b"".join(parts))


def _lean_tail(span: Any) -> bytes:
    """Fields 10-15 of a LeanSpan (the rare ones: dropped counts, events, links, status)."""
    return _tail(
        span._dropped_attributes,
        span._events,
        span._dropped_events,
        span._links,
        span._dropped_links,
        span._status,
    )


def _lean_span(span: Any, head: bytes = b"") -> bytes:
    """``_span`` for ``_lean_trace.LeanSpan``: its fields read directly (same bytes).

    Read as attributes, not through ``span.__dict__``: on CPython 3.11+ an instance
    keeps its attributes inline and ``__dict__`` would build a dict per span.
    """
    # No status, events, links or dropped counts written (the flag LeanSpan's writers set;
    # LeanSpan.end encodes such spans inline with the same rule).
    common = not span._uncommon
    return _span_message(
        span._context,
        span._parent,
        span._name,
        span._kind._value_,
        span._start_time,
        span._end_time,
        span._attributes,
        _STATUS_UNSET if common else _lean_tail(span),
        head,
    )


def _span(span: Any) -> bytes:
    if getattr(span, "_platform_otel_lean", False):
        return _lean_span(span)
    return _span_message(
        span.get_span_context(),
        span.parent,
        span.name,
        span.kind.value,
        span.start_time,
        span.end_time,
        span.attributes,
        _tail(
            span.dropped_attributes,
            span.events,
            span.dropped_events,
            span.links,
            span.dropped_links,
            span.status,
        ),
    )


def _event(event: Any) -> bytes:
    body = b"\x09" + _pack_fixed64(event.timestamp) if event.timestamp else b""
    if event.name:
        body += _str(0x12, event.name)
    body += _attributes_plain(0x1A, event.attributes)
    if event.dropped_attributes:
        body += b"\x20" + _varint(event.dropped_attributes)
    return _ld(0x5A, body)


def _link(link: Any) -> bytes:
    lctx = link.context
    body = b"\x0a\x10" + lctx.trace_id.to_bytes(16, "big")
    body += b"\x12\x08" + lctx.span_id.to_bytes(8, "big")
    body += _attributes_plain(0x22, link.attributes)
    if link.dropped_attributes:
        body += b"\x28" + _varint(link.dropped_attributes)
    body += b"\x35" + _pack_fixed32(0x300 if lctx.is_remote else 0x100)
    return _ld(0x6A, body)


def _group(items: Sequence[Any], encode: Any) -> bytes:
    """Resource -> scope -> items, in first-seen order like the SDK encoders, as wire bytes."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    pairs = _pairs
    for item in items:
        if type(item) is bytes:  # head byte + encoded entry (pair_head)
            resource, scope = pairs[item[0]]
            data: Any = item[1:]  # a copy, not a memoryview: views are GC-tracked objects
        elif type(item) is Encoded:
            resource, scope, data = item.resource, item.instrumentation_scope, item.data
        else:
            resource, scope, data = item.resource, item.instrumentation_scope or None, None
        rgroup = groups.get(id(resource))
        if rgroup is None:
            rgroup = groups[id(resource)] = (resource, {})
        sgroup = rgroup[1].get(id(scope))
        if sgroup is None:
            sgroup = rgroup[1][id(scope)] = (scope, [])
        sgroup[1].append(data if data is not None else encode(item))
    out = []
    for resource, scopes in groups.values():
        body = [_cached(resource, _resource)]
        for scope, encoded in scopes.values():
            sbody = _cached(scope, _scope) if scope is not None else _scope(None)
            sbody += b"".join(encoded)
            if scope is not None and scope.schema_url:
                sbody += _str(0x1A, scope.schema_url)
            body.append(_ld(0x12, sbody))
        if resource.schema_url:
            body.append(_str(0x1A, resource.schema_url))
        out.append(_ld(0x0A, b"".join(body)))
    return b"".join(out)


def encode_spans_request(spans: Sequence[Any]) -> bytes:
    """``ExportTraceServiceRequest`` wire bytes for SDK ``ReadableSpan``s (or ``Encoded`` ones)."""
    return _group(spans, _span)


def encode_lean_span(span: Any) -> bytes | Encoded:
    """:func:`encode_span` for a ``LeanSpan`` whose (resource, scope) pair is registered: the
    per-request path, with no registration step."""
    head = _pair_heads.get((id(span._resource), id(span._instrumentation_scope or None)))
    if head is not None:
        return _lean_span(span, head)
    return encode_span(span)


def encode_span(span: Any) -> bytes | Encoded:
    """One ended span, encoded now, as a queue item (see :func:`pair_head`, :class:`Encoded`)."""
    if getattr(span, "_platform_otel_lean", False):
        resource, scope = span._resource, span._instrumentation_scope or None
        head = pair_head(resource, scope)
        if head is not None:
            return _lean_span(span, head)
        return Encoded(resource, scope, _lean_span(span))
    resource, scope = span.resource, span.instrumentation_scope or None
    head = pair_head(resource, scope)
    if head is not None:
        return head + _span(span)
    return Encoded(resource, scope, _span(span))


def _log(readable: Any) -> bytes:
    record = readable.log_record
    return _log_fields(
        record.timestamp,
        getattr(record.severity_number, "value", None),
        record.severity_text,
        record.body,
        record.attributes,
        readable.dropped_attributes,
        int(record.trace_flags) if record.trace_flags is not None else 0,
        record.trace_id,
        record.span_id,
        record.observed_timestamp,
        getattr(record, "event_name", None),
    )


def _log_fields(
    timestamp: int | None,
    severity: int | None,
    severity_text: str | None,
    body: Any,
    attributes: Mapping[str, Any] | None,
    dropped_attributes: int,
    flags: int,
    trace_id: int | None,
    span_id: int | None,
    observed_timestamp: int | None,
    event_name: str | None,
) -> bytes:
    parts = []
    if timestamp:
        parts.append(b"\x09" + _pack_fixed64(timestamp))
    if severity:
        parts.append(b"\x10" + _varint(severity))
    if severity_text:
        parts.append(_str(0x1A, severity_text))
    parts.append(_ld(0x2A, _any_value(body)))
    parts.append(_cached_attributes(0x32, attributes))
    if dropped_attributes:
        parts.append(b"\x38" + _varint(dropped_attributes))
    if flags:
        parts.append(b"\x45" + _pack_fixed32(flags))
    if trace_id:
        parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
    if span_id:
        parts.append(b"\x52\x08" + span_id.to_bytes(8, "big"))
    if observed_timestamp:
        parts.append(b"\x59" + _pack_fixed64(observed_timestamp))
    if event_name:
        parts.append(_str(0x62, event_name))
    return _ld(0x12, b"".join(parts))


def encode_log_record(
    resource: Any,
    instrumentation_scope: Any,
    *,
    timestamp: int,
    observed_timestamp: int,
    severity_number: int,
    severity_text: str,
    body: Any,
    attributes: Mapping[str, Any],
    dropped_attributes: int,
    span_context: Any,
) -> bytes | Encoded:
    """One log record, encoded from its fields without building SDK objects, as a queue item
    (see :func:`pair_head`, :class:`Encoded`).

    The same bytes as ``_log`` for the equivalent ``ReadableLogRecord``, in one pass.
    """
    severity = _severity_cache.get((severity_number, severity_text))
    if severity is None:
        severity = (b"\x10" + _varint(severity_number) if severity_number else b"") + (
            _str(0x1A, severity_text) if severity_text else b""
        )
        _severity_cache[(severity_number, severity_text)] = severity  # bounded: levels are few
    if type(body) is str:
        text = body.encode("utf-8")
        n = len(text)
        value = (b"\x0a" + bytes((n,)) if n < 0x80 else b"\x0a" + _varint(n)) + text
    else:
        value = _any_value(body)
    parts = [
        b"\x09" + _pack_fixed64(timestamp) if timestamp else b"",
        severity,
        _ld(0x2A, value),
        _cached_attributes(0x32, attributes),
    ]
    if dropped_attributes:
        parts.append(b"\x38" + _varint(dropped_attributes))
    trace_id = span_context.trace_id
    if trace_id:
        flags = int(span_context.trace_flags)
        if flags:
            parts.append(b"\x45" + _pack_fixed32(flags))
        parts.append(b"\x4a\x10" + trace_id.to_bytes(16, "big"))
        parts.append(b"\x52\x08" + span_context.span_id.to_bytes(8, "big"))
    if observed_timestamp:
        parts.append(b"\x59" + _pack_fixed64(observed_timestamp))
    scope = instrumentation_scope or None
    head = pair_head(resource, scope)
    if head is not None:
        parts.insert(0, head + _ld_head(0x12, sum(map(len, parts))))
        return b"".join(parts)
    return Encoded(resource, scope, _ld(0x12, b"".join(parts)))


def encode_logs_request(records: Sequence[Any]) -> bytes:
    """``ExportLogsServiceRequest`` wire bytes for SDK ``ReadableLogRecord``s (or ``Encoded`` ones)."""
    return _group(records, _log)


def _exporter_classes() -> dict[str, type]:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    def raw_stub(method: str, response: Any) -> type:
        class _RawStub:
            """Service stub whose ``Export`` takes already-encoded request bytes."""

            def __init__(self, channel: Any) -> None:
                self.Export = channel.unary_unary(
                    method, request_serializer=None, response_deserializer=response.FromString
                )

        return _RawStub

    trace_stub = raw_stub(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export", ExportTraceServiceResponse
    )
    logs_stub = raw_stub(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export", ExportLogsServiceResponse
    )

    class FastOTLPSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        """``OTLPSpanExporter`` (gRPC) with the fast encoder; same arguments and environment."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._stub = trace_stub
            if self._channel is not None:
                self._client = trace_stub(self._channel)

        def _translate_data(self, data: Sequence[Any]) -> bytes:  # type: ignore[override]
            return encode_spans_request(data)

    class FastOTLPLogExporter(OTLPLogExporter):  # type: ignore[misc]
        """``OTLPLogExporter`` (gRPC) with the fast encoder; same arguments and environment."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._stub = logs_stub
            if self._channel is not None:
                self._client = logs_stub(self._channel)

        def _translate_data(self, data: Sequence[Any]) -> bytes:  # type: ignore[override]
            return encode_logs_request(data)

    return {
        "FastOTLPSpanExporter": FastOTLPSpanExporter,
        "FastOTLPLogExporter": FastOTLPLogExporter,
    }


def __getattr__(name: str) -> Any:
    # The exporter classes need grpc; build them on first use so importing this module stays cheap.
    if name in ("FastOTLPSpanExporter", "FastOTLPLogExporter"):
        classes = _exporter_classes()
        globals().update(classes)
        return classes[name]
    raise AttributeError(name)
