"""The C request path (``_asgi_speedups``) produces exactly the Python path's telemetry.

Both paths run the same ASGI requests (a FastAPI app: routes, a mount, 404, 5xx, an
exception, propagation headers, odd methods and hosts) and everything a user or an
exporter sees is compared: spans and their attributes in order, the encoded queue
items, the duration histogram's points and exemplars, the current span inside the
app and the context left after the request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Response
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from platform_otel._exporters import EncodingBatchSpanProcessor
from platform_otel._otlp_fast import encode_spans_request
from platform_otel.instrumentation._asgi import LeanASGIMiddleware, ServerTelemetry

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = b"00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-00"


@pytest.fixture(autouse=True)
def _require_extension() -> Iterator[None]:
    try:
        from platform_otel import _asgi_speedups  # noqa: F401
    except ImportError:
        if os.environ.get("PLATFORM_OTEL_REQUIRE_SPEEDUPS"):
            raise
        pytest.skip("platform_otel._asgi_speedups was not built (no C compiler at install time)")
    yield


def _app(seen: list[Any]) -> FastAPI:
    app = FastAPI()
    sub = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        seen.append(trace.get_current_span().get_span_context())
        return {"id": item_id}

    @app.post("/items", status_code=201)
    async def create() -> dict[str, bool]:
        seen.append(trace.get_current_span().get_span_context())
        return {"ok": True}

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("boom")

    @sub.get("/x/{name}")
    async def sub_x(name: str) -> dict[str, str]:
        seen.append(trace.get_current_span().get_span_context())
        return {"name": name}

    app.mount("/sub", sub)
    return app


# (method, path, headers, extra scope fields), and whether the C path takes it whole.
REQUESTS: list[tuple[str, str, list[tuple[bytes, bytes]], dict[str, Any], bool]] = [
    ("GET", "/items/1", [(b"host", b"example.com:8443"), (b"user-agent", b"wrk")], {}, True),
    ("GET", "/items/2", [(b"host", b"example.com")], {"scheme": "https"}, True),
    ("GET", "/items/3", [], {"server": ("10.0.0.5", 9000)}, True),  # no Host header
    ("GET", "/items/4", [(b"host", b"[::1]:8080")], {"http_version": "2"}, True),
    ("GET", "/items/5", [(b"host", b"a"), (b"traceparent", TRACEPARENT)], {}, True),
    (
        "GET",
        "/items/6",
        [(b"host", b"a"), (b"traceparent", TRACEPARENT), (b"tracestate", b"k=v")],
        {},
        True,
    ),
    ("GET", "/items/7", [(b"host", b"a"), (b"traceparent", UNSAMPLED)], {}, False),
    ("POST", "/items", [(b"host", b"a")], {"client": ("192.0.2.1", 4000)}, True),
    ("GET", "/nope", [(b"host", b"a")], {}, True),  # 404, no route
    ("OPTIONS", "/items/1", [(b"host", b"a")], {}, True),  # 405
    ("PURGE", "/items/1", [(b"host", b"a")], {}, False),  # _OTHER
    ("GET", "/unavailable", [(b"host", b"a")], {}, False),  # 503
    ("GET", "/boom", [(b"host", b"a")], {}, False),  # exception
    ("GET", "/sub/x/y", [(b"host", b"a")], {}, False),  # under a mount
    ("GET", "/items/8", [[b"host", b"a"]], {}, False),  # a header row that is not a tuple
    ("GET", "/items/9", [(b"host", b"a")], {"client": None, "http_version": ""}, True),
]


class _Counting(ServerTelemetry):
    """Counts the requests that reached the Python methods."""

    starts = 0
    finishes = 0

    def _start(self, scope: Any) -> Any:
        self.starts += 1
        return super()._start(scope)

    def _finish(self, *args: Any) -> None:
        self.finishes += 1
        super()._finish(*args)


class _Queue(SpanExporter):
    accepts_encoded = True

    def __init__(self) -> None:
        self.items: list[Any] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.items.extend(spans)
        return SpanExportResult.SUCCESS


def _drive(middleware: Any, requests: list[Any]) -> list[int]:
    """Run each request through the middleware; returns the response statuses."""

    async def one(method: str, path: str, headers: Any, extra: dict[str, Any]) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "fastapi.telemetry": None,  # FastAPI's native telemetry stays out of this test
            **extra,
        }
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        before = otel_context.get_current()
        try:
            await middleware(scope, receive, send)
        except ValueError:
            pass
        assert otel_context.get_current() is before  # the request's context was reset
        return next((m["status"] for m in sent if m["type"] == "http.response.start"), 500)

    async def all_requests() -> list[int]:
        return [await one(m, p, h, e) for m, p, h, e, _ in requests]

    return asyncio.run(all_requests())


def _run(speedups: bool, encoded: bool = False, views: bool = False) -> dict[str, Any]:
    resource = Resource.create({"service.name": "speedups"})
    exporter = InMemorySpanExporter()
    queue = _Queue()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if encoded:
        provider.add_span_processor(EncodingBatchSpanProcessor(queue))  # type: ignore[arg-type]
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader],
        resource=resource,
        shutdown_on_exit=False,
        views=[View(instrument_name="unrelated")] if views else (),
    )
    telemetry = _Counting(
        provider.get_tracer("speedups.test"),
        meter_provider.get_meter("speedups.test"),
        speedups=speedups,
    )
    assert (telemetry.c_path is not None) is speedups
    seen: list[Any] = []
    statuses = _drive(LeanASGIMiddleware(_app(seen), telemetry), REQUESTS)
    provider.force_flush()
    data = reader.get_metrics_data()
    points = [
        p
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "http.server.request.duration"
        for p in m.data.data_points
    ]
    return {
        "statuses": statuses,
        "spans": exporter.get_finished_spans(),
        "items": list(queue.items),
        "points": points,
        "seen": seen,
        "telemetry": telemetry,
    }


def _span_view(span: Any) -> tuple[Any, ...]:
    """Everything but the random ids and the times."""
    parent = span.parent
    return (
        span.name,
        span.kind,
        list(span.attributes.items()),  # order too: it is the wire order
        None if parent is None else (parent.trace_id, parent.span_id, parent.is_remote),
        span.status.status_code,
        span.status.description,
        [e.name for e in span.events],
        int(span.context.trace_flags),
        str(span.context.trace_state),
        span.resource.attributes,
        span.instrumentation_scope.name,
    )


def _point_view(point: Any) -> tuple[Any, ...]:
    return (sorted(point.attributes.items()), point.count, len(point.bucket_counts))


def test_the_c_path_emits_the_python_paths_spans_and_histogram() -> None:
    fast, python = _run(True), _run(False)
    assert fast["statuses"] == python["statuses"]
    assert fast["statuses"][:3] == [200, 200, 200] and 503 in fast["statuses"]
    assert [_span_view(s) for s in fast["spans"]] == [_span_view(s) for s in python["spans"]]
    assert len(fast["spans"]) == len(REQUESTS) - 1  # the unsampled parent's request: no span
    assert sorted(map(_point_view, fast["points"])) == sorted(map(_point_view, python["points"]))
    assert sum(p.count for p in fast["points"]) == len(REQUESTS)  # unsampled requests count too
    # Inside the app, the current span is the request's server span (log correlation).
    for result in (fast, python):
        ids = {s.context.span_id for s in result["spans"]}
        assert all(ctx.span_id in ids for ctx in result["seen"] if ctx.trace_flags.sampled)
        # Exemplars point at spans of this run.
        exemplar_ids = {e.span_id for p in result["points"] for e in p.exemplars}
        assert exemplar_ids and exemplar_ids <= ids
    # The parent from traceparent is kept, with its trace id.
    remote = [s for s in fast["spans"] if s.parent is not None]
    assert len(remote) == 2 and {s.context.trace_id for s in remote} == {
        0x0AF7651916CD43DD8448EB211C80319C
    }
    assert str(remote[1].context.trace_state) == str(python["spans"][5].context.trace_state)


def test_common_requests_never_reach_the_python_methods() -> None:
    """The C path takes every request it claims, and hands each other one to Python."""
    common = [r for r in REQUESTS if r[4]]
    resource = Resource.create({"service.name": "speedups"})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], resource=resource)
    telemetry = _Counting(provider.get_tracer("t"), meter_provider.get_meter("t"))
    assert telemetry.c_path is not None
    _drive(LeanASGIMiddleware(_app([]), telemetry), common)
    assert (telemetry.starts, telemetry.finishes) == (0, 0)
    for request in (r for r in REQUESTS if not r[4]):
        before = telemetry.starts + telemetry.finishes
        _drive(LeanASGIMiddleware(_app([]), telemetry), [request])
        assert telemetry.starts + telemetry.finishes > before, request[:2]


def test_the_c_path_queues_the_same_encoded_spans() -> None:
    """With the encoding batch processor, span end writes the queue item in C: same bytes,
    ids and times aside."""

    def decoded(items: list[Any]) -> list[Any]:
        assert items and all(type(item) is bytes for item in items)
        request = ExportTraceServiceRequest.FromString(encode_spans_request(items))
        spans = []
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    for field in ("trace_id", "span_id", "start_time_unix_nano",
                                  "end_time_unix_nano"):  # fmt: skip
                        span.ClearField(field)
                    for event in span.events:
                        event.ClearField("time_unix_nano")
                    spans.append((ss.scope.name, span))
        return spans

    fast, python = _run(True, encoded=True), _run(False, encoded=True)
    assert decoded(fast["items"]) == decoded(python["items"])
    assert len(fast["items"]) == len(REQUESTS) - 1


def test_the_c_path_records_through_the_sdk_histogram_when_views_exist() -> None:
    fast, python = _run(True, views=True), _run(False, views=True)
    assert fast["telemetry"]._lean_duration is None  # views: the SDK instrument records
    assert sorted(map(_point_view, fast["points"])) == sorted(map(_point_view, python["points"]))
    assert sum(p.count for p in fast["points"]) == len(REQUESTS)


def test_the_c_path_keeps_no_memory_per_request() -> None:
    """A reference the C code failed to release would keep a few hundred bytes per request
    (the scope, the span, its context): 3,000 requests after a warm-up must not grow the
    traced heap."""
    import tracemalloc

    class Discard(SpanExporter):
        accepts_encoded = True

        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    resource = Resource.create({"service.name": "speedups"})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(EncodingBatchSpanProcessor(Discard()))  # type: ignore[arg-type]
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], resource=resource)
    telemetry = _Counting(provider.get_tracer("t"), meter_provider.get_meter("t"))
    assert telemetry.c_path is not None and telemetry._lean is not None
    assert telemetry._lean.direct_for is not None  # span end queues bytes from C
    seen: list[Any] = []
    middleware = LeanASGIMiddleware(_app(seen), telemetry)
    common = [r for r in REQUESTS if r[4] and b"traceparent" not in dict(r[2])]

    def load(n: int) -> None:
        _drive(middleware, common * (n // len(common)))
        provider.force_flush()
        seen.clear()  # the app's record of span contexts, not ours

    load(500)
    tracemalloc.start()
    try:
        load(500)
        before = tracemalloc.get_traced_memory()[0]
        load(3000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (telemetry.starts, telemetry.finishes) == (0, 0)
    assert grown < 64 * 1024, f"{grown} bytes kept by 3,000 requests"
