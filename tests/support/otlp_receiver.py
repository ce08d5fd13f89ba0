"""A real OTLP receiver (gRPC and HTTP/protobuf) for integration tests and demos.

It implements the collector's ``TraceService``, ``MetricsService`` and
``LogsService`` with grpcio, and ``POST /v1/traces|metrics|logs`` (protobuf,
optionally gzip-compressed, or JSON) with ``http.server``, on ``127.0.0.1``.
Every decoded export request is kept, so tests can assert on exactly what an
exporter put on the wire. ``restart()`` rebinds the same port, which is how a
collector restart looks to an exporter.

Run ``python -m tests.support.otlp_receiver --port 4317`` to print every received
span, metric point and log record as one JSON line each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

__all__ = [
    "ExportedLog",
    "ExportedPoint",
    "ExportedSpan",
    "OtlpReceiver",
    "Received",
    "attributes_to_dict",
    "main",
]

Signal = Literal["traces", "metrics", "logs"]
Protocol = Literal["grpc", "http"]
T = TypeVar("T")

_REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSE_TYPES: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
_SPAN_KINDS = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}


# --------------------------------------------------------------------------- decoding


def any_value(value: common_pb2.AnyValue) -> Any:
    """Decode an OTLP ``AnyValue`` into a plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_to_dict(attributes: Any) -> dict[str, Any]:
    """Decode a repeated ``KeyValue`` field into a dict."""
    return {kv.key: any_value(kv.value) for kv in attributes}


def _hex(raw: bytes) -> str:
    """Hex id; empty string for an absent or all-zero id."""
    return raw.hex() if raw and any(raw) else ""


@dataclass
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status_code: int
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ExportedPoint:
    """One data point of one metric, with its metric's identity and resource."""

    name: str
    type: str  # sum | gauge | histogram | exponential_histogram | summary
    unit: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    value: float | int | None  # number points; histogram/summary: sum
    count: int | None  # histogram/summary points
    is_monotonic: bool | None
    temporality: int | None  # 1 delta, 2 cumulative
    start_time_unix_nano: int
    time_unix_nano: int
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)


@dataclass
class ExportedLog:
    body: Any
    severity_number: int
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    event_name: str
    time_unix_nano: int


@dataclass
class Received:
    """One export request as it arrived."""

    signal: Signal
    protocol: Protocol
    request: Any
    headers: dict[str, str]
    received_at: float


def _flatten_spans(request: Any) -> Iterator[ExportedSpan]:
    for rs in request.resource_spans:
        resource = attributes_to_dict(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield ExportedSpan(
                    name=s.name,
                    trace_id=_hex(s.trace_id),
                    span_id=_hex(s.span_id),
                    parent_span_id=_hex(s.parent_span_id),
                    kind=_SPAN_KINDS.get(s.kind, str(s.kind)),
                    attributes=attributes_to_dict(s.attributes),
                    resource=resource,
                    scope=ss.scope.name,
                    status_code=s.status.code,
                    status_message=s.status.message,
                    start_time_unix_nano=s.start_time_unix_nano,
                    end_time_unix_nano=s.end_time_unix_nano,
                    events=[
                        {"name": e.name, "attributes": attributes_to_dict(e.attributes)}
                        for e in s.events
                    ],
                    links=[
                        {"trace_id": _hex(li.trace_id), "span_id": _hex(li.span_id)}
                        for li in s.links
                    ],
                )


def _exemplars(point: Any) -> list[dict[str, Any]]:
    out = []
    for e in point.exemplars:
        kind = e.WhichOneof("value")
        out.append(
            {
                "value": getattr(e, kind) if kind else None,
                "trace_id": _hex(e.trace_id),
                "span_id": _hex(e.span_id),
                "attributes": attributes_to_dict(e.filtered_attributes),
            }
        )
    return out


def _flatten_metrics(request: Any) -> Iterator[ExportedPoint]:
    for rm in request.resource_metrics:
        resource = attributes_to_dict(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(m, kind)
                monotonic = data.is_monotonic if kind == "sum" else None
                temporality = getattr(data, "aggregation_temporality", None)
                for p in data.data_points:
                    value: float | int | None
                    count: int | None = None
                    buckets: list[int] = []
                    bounds: list[float] = []
                    if kind in ("sum", "gauge"):
                        which = p.WhichOneof("value")
                        value = getattr(p, which) if which else None
                    else:
                        value = p.sum
                        count = p.count
                        if kind == "histogram":
                            buckets = list(p.bucket_counts)
                            bounds = list(p.explicit_bounds)
                    yield ExportedPoint(
                        name=m.name,
                        type=kind,
                        unit=m.unit,
                        attributes=attributes_to_dict(p.attributes),
                        resource=resource,
                        scope=sm.scope.name,
                        value=value,
                        count=count,
                        is_monotonic=monotonic,
                        temporality=temporality,
                        start_time_unix_nano=p.start_time_unix_nano,
                        time_unix_nano=p.time_unix_nano,
                        exemplars=_exemplars(p) if kind != "summary" else [],
                        bucket_counts=buckets,
                        explicit_bounds=bounds,
                    )


def _flatten_logs(request: Any) -> Iterator[ExportedLog]:
    for rl in request.resource_logs:
        resource = attributes_to_dict(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                yield ExportedLog(
                    body=any_value(r.body),
                    severity_number=r.severity_number,
                    severity_text=r.severity_text,
                    trace_id=_hex(r.trace_id),
                    span_id=_hex(r.span_id),
                    attributes=attributes_to_dict(r.attributes),
                    resource=resource,
                    scope=sl.scope.name,
                    event_name=getattr(r, "event_name", ""),
                    time_unix_nano=r.time_unix_nano or r.observed_time_unix_nano,
                )


# --------------------------------------------------------------------------- servers


class _GrpcServicer(
    trace_service_pb2_grpc.TraceServiceServicer,
    metrics_service_pb2_grpc.MetricsServiceServicer,
    logs_service_pb2_grpc.LogsServiceServicer,
):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def _handle(self, signal: Signal, request: Any, context: grpc.ServicerContext) -> Any:
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        status = self._receiver._accept(signal, "grpc", request, headers)
        if status is not None:
            code = {
                503: grpc.StatusCode.UNAVAILABLE,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED,
                400: grpc.StatusCode.INVALID_ARGUMENT,
            }.get(status, grpc.StatusCode.INTERNAL)
            context.abort(code, "receiver told to fail")
        return _RESPONSE_TYPES[signal]()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        # The three services share the method name; dispatch on the request type.
        for signal, typ in _REQUEST_TYPES.items():
            if isinstance(request, typ):
                return self._handle(signal, request, context)  # type: ignore[arg-type]
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown request")  # pragma: no cover


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        signal = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}.get(
            self.path.split("?")[0]
        )
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if signal is None:
            self._reply(404, b"not found", "text/plain")
            return
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = _REQUEST_TYPES[signal]()
            content_type = (self.headers.get("Content-Type") or "").lower()
            is_json = content_type.startswith("application/json")
            if is_json:
                json_format.Parse(body.decode("utf-8"), request)
            else:
                request.ParseFromString(body)
        except (DecodeError, OSError, ValueError, json_format.ParseError) as exc:
            self._reply(400, str(exc).encode(), "text/plain")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = self.server.receiver._accept(signal, "http", request, headers)  # type: ignore[arg-type]
        if status is not None:
            self._reply(status, b"receiver told to fail", "text/plain")
            return
        response = _RESPONSE_TYPES[signal]()
        if is_json:
            self._reply(200, json_format.MessageToJson(response).encode(), "application/json")
        else:
            self._reply(200, response.SerializeToString(), "application/x-protobuf")

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: OtlpReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _HttpHandler)


class OtlpReceiver:
    """In-process OTLP endpoint that records every export request it accepts."""

    def __init__(
        self,
        protocol: Protocol = "grpc",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self.protocol: Protocol = protocol
        self.host = host
        self.port = port
        self.received: list[Received] = []
        #: HTTP status (e.g. 503) to answer instead of accepting; ``None`` accepts.
        self.fail_with: int | None = None
        #: signals that ``fail_with`` applies to (``None``: all of them).
        self.fail_signals: set[str] | None = None
        #: seconds to sleep before answering (a slow collector).
        self.delay: float = 0.0
        self._on_receive = on_receive
        self._cond = threading.Condition()
        self._grpc: grpc.Server | None = None
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL an OTLP exporter should be given (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._grpc is not None or self._http is not None

    def start(self) -> OtlpReceiver:
        if self.running:
            return self
        if self.protocol == "grpc":
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=8),
                options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 64 << 20)],
            )
            servicer = _GrpcServicer(self)
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, server)
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(servicer, server)
            bound = server.add_insecure_port(f"{self.host}:{self.port}")
            if bound == 0:
                raise OSError(f"cannot bind gRPC receiver to {self.host}:{self.port}")
            self.port = bound
            server.start()
            self._grpc = server
        else:
            deadline = time.monotonic() + 5.0
            while True:  # the old socket may linger briefly after a restart
                try:
                    httpd = _HttpServer((self.host, self.port), self)
                    break
                except OSError:
                    if self.port == 0 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self.port = httpd.server_address[1]
            self._http = httpd
            self._http_thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name="otlp-receiver-http",
            )
            self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port is kept for :meth:`start`/:meth:`restart`)."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._http_thread is not None:
                self._http_thread.join(5)
            self._http = None
            self._http_thread = None

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, optionally stay down for ``downtime`` seconds, and listen again on the same port."""
        self.stop()
        if downtime:
            time.sleep(downtime)
        self.start()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- recording ---------------------------------------------------------

    def _accept(
        self, signal: Signal, protocol: Protocol, request: Any, headers: dict[str, str]
    ) -> int | None:
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with is not None and (
            self.fail_signals is None or signal in self.fail_signals
        ):
            return self.fail_with
        item = Received(signal, protocol, request, headers, time.time())
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()
        if self._on_receive is not None:
            self._on_receive(item)
        return None

    def clear(self) -> None:
        with self._cond:
            self.received.clear()

    def requests(self, signal: Signal) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.signal == signal]

    def spans(self) -> list[ExportedSpan]:
        return [s for r in self.requests("traces") for s in _flatten_spans(r.request)]

    def metrics(self) -> list[ExportedPoint]:
        return [p for r in self.requests("metrics") for p in _flatten_metrics(r.request)]

    def logs(self) -> list[ExportedLog]:
        return [log for r in self.requests("logs") for log in _flatten_logs(r.request)]

    def wait_for(self, predicate: Callable[[OtlpReceiver], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value.

        Raises ``AssertionError`` with a summary of what did arrive on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = len(self.received)
            result = predicate(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                if len(self.received) == seen:
                    self._cond.wait(min(remaining, 0.25))
        raise AssertionError(f"timed out after {timeout}s waiting; {self.summary()}")

    def summary(self) -> str:
        """Short description of what arrived, for assertion messages."""
        spans = self.spans()
        points = self.metrics()
        logs = self.logs()
        return (
            f"received {len(spans)} spans {sorted({s.name for s in spans})[:20]}, "
            f"{len(points)} metric points {sorted({p.name for p in points})[:20]}, "
            f"{len(logs)} logs {[str(lg.body)[:60] for lg in logs[:10]]}"
        )


# --------------------------------------------------------------------------- CLI


def _print_items(item: Received) -> None:
    flatten = {"traces": _flatten_spans, "metrics": _flatten_metrics, "logs": _flatten_logs}
    kind = {"traces": "span", "metrics": "metric", "logs": "log"}[item.signal]
    for obj in flatten[item.signal](item.request):
        line = {"signal": kind, "protocol": item.protocol, **asdict(obj)}
        print(json.dumps(line, default=repr), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Listen for OTLP and print each span, metric point and log record as a JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.otlp_receiver", description=__doc__
    )
    parser.add_argument("--port", type=int, default=4317, help="gRPC port (0 = any free port)")
    parser.add_argument("--http-port", type=int, default=None, help="also serve OTLP/HTTP here")
    parser.add_argument(
        "--protocol", choices=["grpc", "http"], default="grpc", help="protocol served on --port"
    )
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    receivers = [
        OtlpReceiver(args.protocol, host=args.host, port=args.port, on_receive=_print_items)
    ]
    if args.http_port is not None:
        receivers.append(
            OtlpReceiver("http", host=args.host, port=args.http_port, on_receive=_print_items)
        )
    for r in receivers:
        r.start()
        print(f"OTLP {r.protocol} receiver listening on {r.endpoint}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for r in receivers:
            r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
