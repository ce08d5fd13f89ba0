"""FastAPI integration: one server span per request, correct route/status/error, histogram."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Response
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from platform_otel._config import InitOptions, load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import fastapi as pf
from tests.support.documented import assert_documented

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
DURATION = "http.server.request.duration"


class Telemetry:
    """In-memory providers plus helpers to read what the integration emitted."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def context(self, impl: str = "lean") -> InstrumentationContext:
        settings = load_settings(
            {},
            InitOptions(
                service_name="test-svc",
                capture_content=False,
                environment="test",
                fastapi_impl=impl,
            ),
        )
        return InstrumentationContext(
            settings=settings,  # type: ignore[arg-type]
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            logger_provider=None,
        )

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]

    def points(self, name: str = DURATION) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def document(self) -> None:
        """Every span name pattern, attribute and metric name seen must be in docs/telemetry.md."""
        names: set[str] = set()
        for span in self.exporter.get_finished_spans():
            names.update(span.attributes or {})
            for event in span.events:
                names.add(event.name)
                names.update(event.attributes or {})
        for point in self.points():
            names.update(point.attributes)
        if self.points():
            names.add(DURATION)
        assert_documented(names)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = Telemetry()
    yield tel
    pf.uninstrument()


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("boom")

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    return app


def test_one_server_span_with_route_name_and_http_attributes(telemetry: Telemetry) -> None:
    """A request yields exactly one SERVER span named '{method} {route}' with the HTTP semconv attributes."""
    app = make_app()
    assert pf.instrument(telemetry.context()) is None
    with TestClient(app) as client:
        assert client.get("/items/42", headers={"user-agent": "bench/1"}).json() == {"item_id": 42}
    spans = telemetry.exporter.get_finished_spans()
    assert len(spans) == 1
    (span,) = spans
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "url.scheme": "http",
        "url.path": "/items/42",
        "server.address": "testserver",
        "server.port": 80,
        "network.protocol.version": "1.1",
        "user_agent.original": "bench/1",
        "client.address": "testclient",
    }
    assert span.status.status_code is StatusCode.UNSET
    telemetry.document()


def test_incoming_traceparent_is_continued(telemetry: Telemetry) -> None:
    """The server span joins the caller's trace given by the W3C traceparent header."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        client.get("/items/1", headers={"traceparent": TRACEPARENT})
        client.get("/items/2")
    first, second = telemetry.server_spans()
    assert format(first.context.trace_id, "032x") == TRACE_ID
    assert first.parent is not None and format(first.parent.span_id, "016x") == PARENT_ID
    assert first.parent.is_remote
    assert second.parent is None  # no header: a new root, never the previous request's trace
    assert format(second.context.trace_id, "032x") != TRACE_ID


def test_unmatched_path_has_no_route_and_no_raw_path_in_metrics(telemetry: Telemetry) -> None:
    """A 404 span is named by method only; metric attributes never carry the raw path."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        for n in range(3):
            assert client.get(f"/no/such/{n}").status_code == 404
    spans = telemetry.server_spans()
    assert [s.name for s in spans] == ["GET"] * 3
    assert all("http.route" not in (s.attributes or {}) for s in spans)
    (point,) = telemetry.points()  # three raw paths, one series
    assert point.count == 3
    assert dict(point.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 404,
        "url.scheme": "http",
    }
    telemetry.document()


def test_duration_histogram_buckets_and_attributes(telemetry: Telemetry) -> None:
    """Requests are recorded in http.server.request.duration (s) with the semconv buckets, one series per route."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        client.get("/items/1")
        client.get("/items/2")
        client.get("/unavailable")
    points = {p.attributes.get("http.route"): p for p in telemetry.points()}
    assert set(points) == {"/items/{item_id}", "/unavailable"}
    ok = points["/items/{item_id}"]
    assert ok.count == 2
    assert tuple(ok.explicit_bounds) == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    )  # fmt: skip
    assert 0 < ok.sum < 5
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "url.scheme": "http",
    }
    assert points["/unavailable"].attributes["error.type"] == "503"


def test_background_task_time_is_not_request_latency(telemetry: Telemetry) -> None:
    """Span end and duration stop when the response is sent, not after a slow background task."""
    app = FastAPI()
    ran: list[bool] = []

    async def slow_task() -> None:
        await asyncio.sleep(0.3)
        ran.append(True)

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(slow_task)
        return {"queued": True}

    pf.instrument(telemetry.context())
    with TestClient(app) as client:
        assert client.get("/later").status_code == 200
    assert ran == [True]
    (span,) = telemetry.server_spans()
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 < 0.25
    (point,) = telemetry.points()
    assert point.sum < 0.25


def test_5xx_response_sets_error_type_and_status(telemetry: Telemetry) -> None:
    """A 5xx response marks the span as error with error.type set to the status code."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        assert client.get("/unavailable").status_code == 503
    (span,) = telemetry.server_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "503"
    assert span.attributes["http.response.status_code"] == 503


def test_endpoint_exception_is_recorded_and_reraised_unchanged(telemetry: Telemetry) -> None:
    """An exception from the endpoint reaches the server unchanged and is recorded on the span."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client, pytest.raises(RuntimeError, match=r"^boom$"):
        client.get("/fail")
    (span,) = telemetry.server_spans()
    assert span.name == "GET /fail"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500  # ServerErrorMiddleware answered
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    (point,) = telemetry.points()
    assert point.attributes["error.type"] == "RuntimeError"
    telemetry.document()


def test_apps_created_before_and_after_instrument_are_traced(telemetry: Telemetry) -> None:
    """Apps built before and after instrument() (even with a prebuilt middleware stack) are traced."""
    before = make_app()
    with TestClient(before) as client:  # stack built and used before instrument()
        client.get("/items/0")
    pf.instrument(telemetry.context())
    after = make_app()
    with TestClient(before) as c1, TestClient(after) as c2:
        c1.get("/items/1")
        c2.get("/items/2")
    assert [s.attributes["url.path"] for s in telemetry.server_spans()] == ["/items/1", "/items/2"]


def test_hooked_app_is_still_an_asgi3_coroutine_app(telemetry: Telemetry) -> None:
    """Servers inspect ``app.__call__``: uvicorn serves an app whose ``__call__`` is not a
    coroutine function as an ASGI2 app (every request then fails with a TypeError)."""
    import inspect

    original = FastAPI.__call__
    pf.instrument(telemetry.context())
    assert FastAPI.__call__ is not original
    assert inspect.iscoroutinefunction(FastAPI.__call__)
    assert asyncio.iscoroutinefunction(make_app().__call__)
    pf.uninstrument()
    assert FastAPI.__call__ is original


def test_instrument_twice_still_one_span(telemetry: Telemetry) -> None:
    """instrument() is idempotent: calling it twice does not double the spans."""
    assert pf.instrument(telemetry.context()) is None
    assert pf.instrument(telemetry.context()) is None
    with TestClient(make_app()) as client:
        client.get("/items/1")
    assert len(telemetry.exporter.get_finished_spans()) == 1


def test_app_instrumented_by_official_instrumentor_traced_once(telemetry: Telemetry) -> None:
    """An app already instrumented with FastAPIInstrumentor gets no second server span from us."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = make_app()
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        exclude_spans=["receive", "send"],
    )
    try:
        pf.instrument(telemetry.context())
        with TestClient(app) as client:
            client.get("/items/5")
        assert len(telemetry.server_spans()) == 1
        assert len(telemetry.exporter.get_finished_spans()) == 1
    finally:
        FastAPIInstrumentor.uninstrument_app(app)


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("fastapi.telemetry") is None,
    reason="this FastAPI has no native telemetry (fastapi.telemetry)",
)
def test_app_with_explicit_native_telemetry_traced_once(telemetry: Telemetry) -> None:
    """An app built with FastAPI(telemetry={"tracer_provider": ...}) keeps FastAPI's own span, and gets no second one."""
    app = FastAPI(
        telemetry={
            "tracer_provider": telemetry.tracer_provider,
            "meter_provider": telemetry.meter_provider,
            "operation_spans": False,
        }
    )

    @app.get("/native/{n}")
    async def native(n: int) -> dict[str, int]:
        return {"n": n}

    pf.instrument(telemetry.context())
    with TestClient(app) as client:
        client.get("/native/1")
    (span,) = telemetry.server_spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "fastapi"  # FastAPI's native span, not ours
    assert len(telemetry.exporter.get_finished_spans()) == 1


def test_native_implementation_option_installs_no_hook(telemetry: Telemetry) -> None:
    """fastapi_impl='native' leaves FastAPI.__call__ untouched (FastAPI's built-in telemetry does the work)."""
    before = FastAPI.__dict__["__call__"]
    assert pf.instrument(telemetry.context(impl="native")) is None
    assert FastAPI.__dict__["__call__"] is before


def test_mounted_fastapi_app_one_span_with_full_route(telemetry: Telemetry) -> None:
    """A FastAPI app mounted in another gives one span whose route includes the mount prefix."""
    pf.instrument(telemetry.context())
    outer = FastAPI()
    outer.mount("/sub", make_app())
    with TestClient(outer) as client:
        assert client.get("/sub/items/7").status_code == 200
    (span,) = telemetry.server_spans()
    assert span.name == "GET /sub/items/{item_id}"
    assert span.attributes["http.route"] == "/sub/items/{item_id}"


def test_unknown_method_is_reported_as_other(telemetry: Telemetry) -> None:
    """A non-standard HTTP method is recorded as _OTHER (original kept on the span), never as itself in metrics."""
    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        assert client.request("BREW", "/items/1").status_code == 405
    (span,) = telemetry.server_spans()
    assert span.name == "HTTP /items/{item_id}"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "BREW"
    (point,) = telemetry.points()
    assert point.attributes["http.request.method"] == "_OTHER"
    telemetry.document()


async def test_httpx_asgi_transport_and_uninstrument(telemetry: Telemetry) -> None:
    """Requests through httpx.ASGITransport are traced; after uninstrument() nothing is emitted."""
    app = make_app()
    pf.instrument(telemetry.context())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://example.org:8080"
    ) as client:
        assert (await client.get("/items/3")).status_code == 200
        (span,) = telemetry.server_spans()
        assert span.attributes["server.address"] == "example.org"
        assert span.attributes["server.port"] == 8080
        pf.uninstrument()
        assert (await client.get("/items/4")).status_code == 200
    assert len(telemetry.server_spans()) == 1


def test_internal_failure_never_breaks_the_request(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If our span code raises, the request is still served normally (error swallowed in production)."""
    from platform_otel.instrumentation._asgi import ServerTelemetry

    monkeypatch.delenv("PLATFORM_OTEL_RAISE_INTERNAL", raising=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("bug in platform-otel")

    pf.instrument(telemetry.context())
    with TestClient(make_app()) as client:
        monkeypatch.setattr(ServerTelemetry, "begin", broken)
        assert client.get("/items/9").json() == {"item_id": 9}
        monkeypatch.undo()
        monkeypatch.delenv("PLATFORM_OTEL_RAISE_INTERNAL", raising=False)
        monkeypatch.setattr(ServerTelemetry, "end", broken)
        assert client.get("/items/10").json() == {"item_id": 10}


def test_official_implementation_option(telemetry: Telemetry) -> None:
    """fastapi_impl='official' traces each app once with FastAPIInstrumentor (no send/receive spans)."""
    app = make_app()  # created before instrument(): still covered
    assert pf.instrument(telemetry.context(impl="official")) is None
    with TestClient(app) as client:
        client.get("/items/1")
        client.get("/items/2")
    spans = telemetry.exporter.get_finished_spans()
    assert [s.kind for s in spans] == [SpanKind.SERVER, SpanKind.SERVER]
    assert spans[0].name == "GET /items/{item_id}"
    assert app._is_instrumented_by_opentelemetry  # type: ignore[attr-defined]
    pf.uninstrument()
    assert not app._is_instrumented_by_opentelemetry  # type: ignore[attr-defined]


_UVICORN_APP = textwrap.dedent(
    """
    import logging, sys, types
    from fastapi import FastAPI
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from platform_otel.instrumentation import InstrumentationContext
    from platform_otel.instrumentation import fastapi as pf

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    # Global providers switch on FastAPI's own native telemetry: it must not add spans.
    trace.set_tracer_provider(tp)
    metrics.set_meter_provider(mp)

    class TraceIdOnAccessLines(logging.Filter):
        def filter(self, record):
            ctx = trace.get_current_span().get_span_context()
            # uvicorn's AccessFormatter ignores record.msg: report on a line of our own.
            print(f"access-line {record.args[2]} trace_id={ctx.trace_id:032x}", flush=True)
            return True

    logging.getLogger("uvicorn.access").addFilter(TraceIdOnAccessLines())

    app = FastAPI()

    @app.get("/hello")
    async def hello():
        return {"message": "hello"}

    @app.get("/spans")
    def spans():
        return [
            {"name": s.name, "kind": s.kind.name, "trace_id": f"{s.context.trace_id:032x}"}
            for s in exporter.get_finished_spans()
        ]

    from platform_otel import _fast
    from platform_otel._config import InitOptions, load_settings
    _fast.enable()
    settings = load_settings({}, InitOptions(service_name="uv", capture_content=False, fastapi_impl="lean"))
    pf.instrument(InstrumentationContext(settings, tp, mp, None))
    """
)


@pytest.mark.integration
def test_real_uvicorn_one_span_and_access_log_carries_trace_id(tmp_path: Path) -> None:
    """Under real uvicorn: one server span per request (FastAPI's native telemetry off) and the access line has the request's trace id."""
    (tmp_path / "uvapp.py").write_text(_UVICORN_APP)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(src)])}
    env.pop("PLATFORM_OTEL_RAISE_INTERNAL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "uvapp:app", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port, "uvicorn did not start"
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/hello", headers={"traceparent": TRACEPARENT}).status_code == 200
        spans = httpx.get(f"{base}/spans").json()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert spans == [{"name": "GET /hello", "kind": "SERVER", "trace_id": TRACE_ID}]
    assert f"access-line /hello trace_id={TRACE_ID}" in out.splitlines(), out


_INIT_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()  # created before init(): must still be traced


    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}


    import platform_otel

    platform_otel.init()
    """
)


@pytest.mark.integration
def test_init_exports_server_span_and_duration_metric_over_otlp(
    tmp_path: Path, otlp_grpc_receiver: Any
) -> None:
    """With init() under real uvicorn, the receiver gets one server span per request (continuing traceparent) and the duration histogram by route."""
    from tests.support.fixtures import free_port, otel_env, start_process, wait_http

    (tmp_path / "initapp.py").write_text(_INIT_APP)
    port = free_port()
    env = otel_env(otlp_grpc_receiver, service_name="fastapi-it", PYTHONPATH=str(tmp_path))
    argv = [sys.executable, "-m", "uvicorn", "initapp:app", "--port", str(port)]
    with start_process(argv, env, cwd=tmp_path) as srv:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/items/0", srv)
        assert httpx.get(f"{base}/items/7", headers={"traceparent": TRACEPARENT}).status_code == 200
        assert httpx.get(f"{base}/missing/raw/path").status_code == 404
        spans = otlp_grpc_receiver.wait_for(
            lambda r: (
                [s for s in r.spans() if s.attributes.get("url.path") == "/missing/raw/path"]
                and r.spans()
            )
        )
        points = otlp_grpc_receiver.wait_for(
            lambda r: [p for p in r.metrics() if p.name == DURATION] or None
        )
    server_spans = [s for s in spans if s.kind == "SERVER"]
    assert len(server_spans) == len(spans)  # no send/receive or FastAPI operation spans
    traced = next(s for s in server_spans if s.attributes.get("url.path") == "/items/7")
    assert traced.name == "GET /items/{item_id}"
    assert traced.trace_id == TRACE_ID and traced.parent_span_id == PARENT_ID
    assert traced.resource["service.name"] == "fastapi-it"
    assert {p.attributes.get("http.route") for p in points} <= {"/items/{item_id}", None}
    assert all("url.path" not in p.attributes for p in points)
    assert f"trace_id={TRACE_ID}" in next(
        line for line in srv.output.splitlines() if "GET /items/7" in line
    )


_KEEPALIVE_APP = textwrap.dedent(
    """
    import gc, types, weakref
    from fastapi import FastAPI
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from platform_otel.instrumentation import InstrumentationContext
    from platform_otel.instrumentation import fastapi as pf

    ended = []

    class Track(SpanProcessor):
        def on_end(self, span):
            ended.append(weakref.ref(span))

    tp = TracerProvider()
    tp.add_span_processor(Track())
    app = FastAPI()

    @app.get("/hello")
    async def hello():
        return {"message": "hello"}

    @app.get("/alive")
    def alive():
        gc.collect()  # only what is still referenced survives
        return {"ended": len(ended), "alive": sum(ref() is not None for ref in ended)}

    from platform_otel import _fast
    from platform_otel._config import InitOptions, load_settings
    _fast.enable()
    settings = load_settings({}, InitOptions(service_name="ka", capture_content=False, fastapi_impl="lean"))
    pf.instrument(InstrumentationContext(settings, tp, MeterProvider(), None))
    """
)


@pytest.mark.integration
def test_uvicorn_keep_alive_does_not_keep_finished_request_spans_alive(tmp_path: Path) -> None:
    """Under real uvicorn with keep-alive, a finished request's span is freed with the request.

    uvicorn schedules its keep-alive timer inside the last ``send`` and a timer keeps a
    copy of the current context: with the span current there, every finished request's
    span, attributes and context stayed alive in cancelled timers, which multiplied the
    garbage collector's work (docs/performance.md, "Garbage the server kept alive").
    """
    from tests.support.fixtures import free_port, start_process, wait_http

    (tmp_path / "kaapp.py").write_text(_KEEPALIVE_APP)
    port = free_port()
    src = Path(__file__).resolve().parents[1] / "src"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(src)])}
    argv = [sys.executable, "-m", "uvicorn", "kaapp:app", "--port", str(port), "--no-access-log"]
    with start_process(argv, env, cwd=tmp_path) as srv:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/hello", srv)
        # An idle keep-alive connection's timer stays first in the event loop's timer heap,
        # so the timers the busy connection cancels behind it are not dropped early.
        with httpx.Client(base_url=base) as idle, httpx.Client(base_url=base) as busy:
            assert idle.get("/hello").status_code == 200
            for _ in range(40):
                assert busy.get("/hello").status_code == 200
            counts = busy.get("/alive").json()
    assert counts["ended"] >= 42
    assert counts["alive"] <= 1, counts  # at most the request that just finished
