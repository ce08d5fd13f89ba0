"""A tiny OTLP/HTTP receiver for the demo (no collector to install).

Accepts ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` (protobuf,
optionally gzip) on 127.0.0.1 and keeps what arrives, so the demo can show all
three signals. For real deployments point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at an
OpenTelemetry Collector instead.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

__all__ = ["Collector", "LogRecord", "Point", "Span"]

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA in the OTLP protocol


@dataclass
class Span:
    name: str
    service: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    status_code: int
    attributes: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Point:
    """One metric data point as exported (cumulative or delta, see ``delta``)."""

    metric: str
    kind: str  # "sum", "gauge" or "histogram"
    unit: str
    service: str
    scope: str
    attributes: dict[str, Any]
    time_ns: int
    value: float = 0.0  # sum / gauge value
    count: int = 0  # histogram observations
    total: float = 0.0  # histogram sum
    delta: bool = False
    monotonic: bool = False
    resource: dict[str, Any] = field(default_factory=dict)

    def stream(self) -> tuple[Any, ...]:
        """Identity of the time series this point belongs to (one per process)."""
        instance = self.resource.get("service.instance.id", "")
        return (instance, self.scope, self.metric, tuple(sorted(self.attributes.items())))


@dataclass
class LogRecord:
    body: str
    service: str
    scope: str  # the Python logger's name
    severity: str
    trace_id: str
    span_id: str
    time_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return (
        getattr(v, kind)
        if kind in ("string_value", "bool_value", "int_value", "double_value")
        else str(v)
    )


def _attrs(attributes: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in attributes}


class Collector:
    """Start with ``start()``; read ``spans()``, ``points()``, ``logs()``; ``stop()`` when done."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._points: list[Point] = []
        self._logs: list[LogRecord] = []
        self._lock = threading.Lock()
        self._keeping = True
        services: dict[str, tuple[Any, Any, Any]] = {
            "/v1/traces": (
                trace_service_pb2.ExportTraceServiceRequest,
                trace_service_pb2.ExportTraceServiceResponse,
                self._add_spans,
            ),
            "/v1/metrics": (
                metrics_service_pb2.ExportMetricsServiceRequest,
                metrics_service_pb2.ExportMetricsServiceResponse,
                self._add_points,
            ),
            "/v1/logs": (
                logs_service_pb2.ExportLogsServiceRequest,
                logs_service_pb2.ExportLogsServiceResponse,
                self._add_logs,
            ),
        }

        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                payload = b""
                if self.path in services and collector._keeping:
                    request_type, response_type, add = services[self.path]
                    request = request_type()
                    request.ParseFromString(body)
                    add(request)
                    payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def stop_keeping(self) -> None:
        """Go on answering, keep nothing more (bounded memory while ``--stack`` holds)."""
        self._keeping = False

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def points(self) -> list[Point]:
        """Every metric data point received, in arrival order."""
        with self._lock:
            return list(self._points)

    def logs(self) -> list[LogRecord]:
        with self._lock:
            return list(self._logs)

    def latest(self) -> list[Point]:
        """One point per time series: the newest cumulative value, or the sum of the deltas."""
        out: dict[tuple[Any, ...], Point] = {}
        for p in sorted(self.points(), key=lambda p: p.time_ns):
            key = p.stream()
            prev = out.get(key)
            if prev is not None and p.delta and p.kind != "gauge":
                p = replace(
                    p,
                    value=prev.value + p.value,
                    count=prev.count + p.count,
                    total=prev.total + p.total,
                )
            out[key] = p
        return list(out.values())

    def _add_spans(self, request: Any) -> None:
        out: list[Span] = []
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(
                        Span(
                            name=s.name,
                            service=str(resource.get("service.name", "?")),
                            kind=_KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            status_code=s.status.code,
                            attributes=_attrs(s.attributes),
                            scope=ss.scope.name,
                            resource=resource,
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                        )
                    )
        with self._lock:
            self._spans.extend(out)

    def _add_points(self, request: Any) -> None:
        out: list[Point] = []
        for rm in request.resource_metrics:
            resource = _attrs(rm.resource.attributes)
            service = str(resource.get("service.name", "?"))
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    common: dict[str, Any] = {
                        "metric": m.name,
                        "kind": kind,
                        "unit": m.unit,
                        "service": service,
                        "scope": sm.scope.name,
                        "resource": resource,
                        "delta": getattr(data, "aggregation_temporality", 0) == _DELTA,
                        "monotonic": bool(getattr(data, "is_monotonic", False)),
                    }
                    for dp in data.data_points:
                        extra: dict[str, Any] = {}
                        if kind == "histogram":
                            extra = {"count": dp.count, "total": dp.sum}
                        elif kind in ("sum", "gauge"):
                            number = dp.WhichOneof("value")
                            extra = {"value": getattr(dp, number) if number else 0.0}
                        else:  # exponential histogram / summary: not used by platform-otel
                            extra = {"count": getattr(dp, "count", 0)}
                        out.append(
                            Point(
                                attributes=_attrs(dp.attributes),
                                time_ns=dp.time_unix_nano,
                                **common,
                                **extra,
                            )
                        )
        with self._lock:
            self._points.extend(out)

    def _add_logs(self, request: Any) -> None:
        out: list[LogRecord] = []
        for rl in request.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append(
                        LogRecord(
                            body=str(_value(r.body)) if r.HasField("body") else "",
                            service=str(resource.get("service.name", "?")),
                            scope=sl.scope.name,
                            severity=r.severity_text,
                            trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(),
                            time_ns=r.time_unix_nano or r.observed_time_unix_nano,
                            attributes=_attrs(r.attributes),
                            resource=resource,
                        )
                    )
        with self._lock:
            self._logs.extend(out)
