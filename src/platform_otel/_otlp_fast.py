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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

__all__ = [
    "FastOTLPLogExporter",
    "FastOTLPSpanExporter",
    "encode_logs_request",
    "encode_spans_request",
]

if TYPE_CHECKING:  # built lazily by __getattr__ (they need grpc)
    FastOTLPSpanExporter: type
    FastOTLPLogExporter: type

_CACHE_LIMIT = 8192
_kv_cache: dict[tuple[int, str, type, Any], bytes] = {}
_obj_cache: dict[int, tuple[object, bytes]] = {}  # id -> (object kept alive, encoding)
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# Span.flags (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK = 0x100, ..._IS_REMOTE_MASK = 0x200)
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)
# SDK SpanKind.value (INTERNAL=0 ... CONSUMER=4) -> Span.kind field (6) with the OTLP enum value
_KIND_BYTES = {v: b"\x30" + bytes((v + 1,)) for v in range(5)}


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
    parts = []
    cache = _kv_cache
    # BoundedAttributes is a MutableMapping whose items() goes through the ABC
    # (__iter__ + __getitem__ per key); its backing dict iterates several times faster.
    backing = getattr(attributes, "_dict", None)
    for key, value in (backing if isinstance(backing, dict) else attributes).items():
        if isinstance(value, (str, int, float, bool)):
            ck = (tag, key, type(value), value)
            enc = cache.get(ck)
            if enc is None:
                enc = _ld(tag, _key_value(key, value))
                if len(cache) < _CACHE_LIMIT:
                    cache[ck] = enc
        else:
            enc = _ld(tag, _key_value(key, value))
        parts.append(enc)
    return b"".join(parts)


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
    return b"".join(_ld(tag, _key_value(k, v)) for k, v in attributes.items())


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


def _span(span: Any) -> bytes:
    ctx = span.get_span_context()
    parent = span.parent
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
    name = span.name
    if name:
        parts.append(_str(0x2A, name))
    parts.append(_KIND_BYTES[span.kind.value])
    start, end = span.start_time, span.end_time
    if start and end:
        parts.append(_pack_times(0x39, start, 0x41, end))
    else:
        if start:
            parts.append(b"\x39" + _pack_fixed64(start))
        if end:
            parts.append(b"\x41" + _pack_fixed64(end))
    parts.append(_cached_attributes(0x4A, span.attributes))
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    events = span.events
    if events:
        parts.extend(_event(event) for event in events)
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    links = span.links
    if links:
        parts.extend(_link(link) for link in links)
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None and (status.description or status.status_code.value):
        parts.append(_status(status))
    elif status is not None:
        parts.append(_STATUS_UNSET)
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return _ld(0x12, b"".join(parts))


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
    for item in items:
        resource = item.resource
        scope = item.instrumentation_scope or None
        rgroup = groups.get(id(resource))
        if rgroup is None:
            rgroup = groups[id(resource)] = (resource, {})
        sgroup = rgroup[1].get(id(scope))
        if sgroup is None:
            sgroup = rgroup[1][id(scope)] = (scope, [])
        sgroup[1].append(encode(item))
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
    """``ExportTraceServiceRequest`` wire bytes for SDK ``ReadableSpan``s."""
    return _group(spans, _span)


def _log(readable: Any) -> bytes:
    record = readable.log_record
    parts = []
    if record.timestamp:
        parts.append(b"\x09" + _pack_fixed64(record.timestamp))
    severity = getattr(record.severity_number, "value", None)
    if severity:
        parts.append(b"\x10" + _varint(severity))
    if record.severity_text:
        parts.append(_str(0x1A, record.severity_text))
    parts.append(_ld(0x2A, _any_value(record.body)))
    parts.append(_cached_attributes(0x32, record.attributes))
    if readable.dropped_attributes:
        parts.append(b"\x38" + _varint(readable.dropped_attributes))
    flags = int(record.trace_flags) if record.trace_flags is not None else 0
    if flags:
        parts.append(b"\x45" + _pack_fixed32(flags))
    if record.trace_id:
        parts.append(b"\x4a\x10" + record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts.append(b"\x52\x08" + record.span_id.to_bytes(8, "big"))
    if record.observed_timestamp:
        parts.append(b"\x59" + _pack_fixed64(record.observed_timestamp))
    if getattr(record, "event_name", None):
        parts.append(_str(0x62, record.event_name))
    return _ld(0x12, b"".join(parts))


def encode_logs_request(records: Sequence[Any]) -> bytes:
    """``ExportLogsServiceRequest`` wire bytes for SDK ``ReadableLogRecord``s."""
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
