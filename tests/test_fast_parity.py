"""Fast, never different: one scenario list run through the fast path, the SDK path and the
official ``opentelemetry-instrumentation-fastapi``.

Each scenario is a FastAPI request (or websocket) with a user span processor, a sampler
that records what it was asked, and an in-memory exporter. The fast path and the SDK path
must agree on everything exported and observed (ids and times aside); the official
instrumentation must agree on the span's name, kind, route, status and the attributes
both emit (it adds spans of its own for websocket messages, which are left out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from platform_otel import _fast
from platform_otel._config import InitOptions, load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import fastapi as pf

PATHS = ("fast", "sdk", "official")


class RecordingProcessor(SpanProcessor):
    """A user's span processor: what it saw at on_start and on_end."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.ended: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append((span.name, dict(span.attributes or {})))

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class RecordingSampler(Sampler):
    """Samples what has ``sample`` in its path; records the name and attributes it was asked about."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def should_sample(
        self,
        parent_context,
        trace_id,
        name,
        kind=None,
        attributes=None,
        links=None,
        trace_state=None,
    ):  # type: ignore[no-untyped-def]
        self.asked.append((name, dict(attributes or {})))
        keep = "drop" not in str((attributes or {}).get("url.path", ""))
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE if keep else Decision.DROP,
            {**(attributes or {}), "sampler.note": "seen"},
        )

    def get_description(self) -> str:
        return "RecordingSampler"


@dataclass
class Run:
    spans: list[ReadableSpan]
    processor: RecordingProcessor
    sampler: RecordingSampler | None
    responses: list[Any] = field(default_factory=list)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/renamed")
    def renamed() -> dict[str, str]:
        span = trace.get_current_span()
        span.update_name("custom name")
        span.set_attribute("app.one", 1)
        span.set_attributes({"app.two": "2", "app.list": [1, 2]})
        span.add_event("app.event", {"k": "v"})
        span.record_exception(ValueError("handled"))
        span.set_status(Status(StatusCode.ERROR, "marked by app"))
        return {"ok": "yes"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/headers")
    def headers() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"ok": 1}, headers={"x-resp": "r1", "set-cookie": "secret=1"})

    @app.get("/drop")
    def drop() -> dict[str, str]:
        return {"dropped": "yes"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close()

    return app


def run(
    path: str,
    requests: Callable[[TestClient], list[Any]],
    *,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str] | None = None,
    sampler: RecordingSampler | None = None,
    limits: SpanLimits | None = None,
    **init_args: Any,
) -> Run:
    """The same requests, traced the ``path`` way."""
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    if path == "official":
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        from opentelemetry.instrumentation import _semconv

        monkeypatch.setattr(
            _semconv._OpenTelemetrySemanticConventionStability, "_initialized", False
        )
    exporter = InMemorySpanExporter()
    processor = RecordingProcessor()
    provider = TracerProvider(
        sampler=ParentBased(sampler) if sampler is not None else None,
        span_limits=limits,
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    if path == "sdk":
        _fast.reset()
    else:
        _fast.enable()
    settings = load_settings(
        None,  # the environment the scenario set
        InitOptions(
            service_name="parity",
            fastapi_impl="official" if path == "official" else "lean",
            **init_args,
        ),
    )
    pf.instrument(InstrumentationContext(settings, provider, meter_provider, None))
    try:
        with TestClient(make_app()) as client:
            responses = requests(client)
    finally:
        pf.uninstrument()
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    return Run(spans, processor, sampler, responses)


_VOLATILE = {"exception.stacktrace"}


def comparable(span: ReadableSpan) -> dict[str, Any]:
    """Everything a user sees of a span except ids and times."""
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": dict(span.attributes or {}),
        "status": (span.status.status_code, span.status.description),
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k not in _VOLATILE})
            for e in span.events
        ],
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "parent": span.parent is not None,
    }


def three_ways(monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> dict[str, Run]:
    out = {}
    for path in PATHS:
        with monkeypatch.context() as m:
            out[path] = run(path, *args, monkeypatch=m, **kwargs)
    return out


def assert_fast_equals_sdk(runs: dict[str, Run]) -> None:
    fast, sdk = runs["fast"], runs["sdk"]
    assert [comparable(s) for s in fast.spans] == [comparable(s) for s in sdk.spans]
    assert fast.processor.started == sdk.processor.started
    assert fast.processor.ended == sdk.processor.ended
    if fast.sampler is not None and sdk.sampler is not None:
        assert fast.sampler.asked == sdk.sampler.asked


SHARED = ("http.request.method", "http.route", "http.response.status_code", "url.scheme")


def assert_like_official(runs: dict[str, Run]) -> None:
    ours, official = runs["fast"].spans, runs["official"].spans
    assert [s.name for s in ours] == [s.name for s in official]
    for mine, theirs in zip(ours, official, strict=True):
        for key in SHARED:
            assert (mine.attributes or {}).get(key) == (theirs.attributes or {}).get(key), key
        assert mine.status.status_code == theirs.status.status_code


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    pf.uninstrument()


def test_name_and_route_are_set_when_the_span_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processors (on_start) and samplers see 'GET /items/{item_id}' and http.route, as with the official instrumentation."""
    runs = three_ways(monkeypatch, lambda c: [c.get("/items/7").json()], sampler=RecordingSampler())
    assert_fast_equals_sdk(runs)
    assert_like_official(runs)
    for path in PATHS:
        name, attributes = runs[path].processor.started[0]
        assert name == "GET /items/{item_id}", path
        assert attributes["http.route"] == "/items/{item_id}", path
        asked_name, asked_attributes = runs[path].sampler.asked[0]  # type: ignore[union-attr]
        assert asked_name == "GET /items/{item_id}"
        assert asked_attributes["http.route"] == "/items/{item_id}"
    assert runs["fast"].spans[0].attributes["sampler.note"] == "seen"  # type: ignore[index]


def test_what_the_route_does_to_its_span_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """update_name, set_attribute(s), add_event, record_exception and set_status from the route survive the request's end."""
    runs = three_ways(monkeypatch, lambda c: [c.get("/renamed").json()])
    assert_fast_equals_sdk(runs)
    for path in PATHS:
        (span,) = runs[path].spans
        assert span.name == "custom name", path
        assert span.attributes["app.one"] == 1  # type: ignore[index]
        assert span.attributes["app.list"] == (1, 2)  # type: ignore[index]
        assert [e.name for e in span.events] == ["app.event", "exception"]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "marked by app"
        assert span.attributes["http.response.status_code"] == 200  # type: ignore[index]


def test_excluded_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) leaves matching requests untraced."""
    for variable in ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        runs = three_ways(
            monkeypatch,
            lambda c: [c.get("/health").json(), c.get("/items/1").json()],
            env={variable: "health,/metrics"},
        )
        assert_fast_equals_sdk(runs)
        assert_like_official(runs)
        assert [s.name for s in runs["fast"].spans] == ["GET /items/{item_id}"], variable


def test_captured_headers_with_sanitizing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Request and response headers named by the OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* variables become attributes; sanitized ones are redacted."""
    env = {
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-req.*,authorization",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "x-resp,set-cookie",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization,set-cookie",
    }
    runs = three_ways(
        monkeypatch,
        lambda c: [c.get("/headers", headers={"x-req-id": "abc", "authorization": "t0k"}).json()],
        env=env,
    )
    assert_fast_equals_sdk(runs)
    for path in PATHS:
        attributes = runs[path].spans[0].attributes
        assert attributes["http.request.header.x_req_id"] == ("abc",), path  # type: ignore[index]
        assert attributes["http.request.header.authorization"] == ("[REDACTED]",), path  # type: ignore[index]
        assert attributes["http.response.header.x_resp"] == ("r1",), path  # type: ignore[index]
        assert attributes["http.response.header.set_cookie"] == ("[REDACTED]",), path  # type: ignore[index]


def test_request_and_response_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """init(server_request_hook=..., server_response_hook=...) run on the server span; a failing hook never breaks the request."""
    monkeypatch.delenv("PLATFORM_OTEL_RAISE_INTERNAL", raising=False)

    def request_hook(span: Any, scope: Any) -> None:
        span.set_attribute("hook.path", scope["path"])

    def response_hook(span: Any, scope: Any, message: Any) -> None:
        span.set_attribute("hook.status", message["status"])
        raise RuntimeError("a bug in the user's hook")

    runs = {
        path: run(
            path,
            lambda c: [c.get("/items/3").status_code],
            monkeypatch=monkeypatch,
            server_request_hook=request_hook,
            server_response_hook=response_hook,
        )
        for path in ("fast", "sdk")
    }
    assert_fast_equals_sdk(runs)
    (span,) = runs["fast"].spans
    assert runs["fast"].responses == [200]
    assert span.attributes["hook.path"] == "/items/3"  # type: ignore[index]
    assert span.attributes["hook.status"] == 200  # type: ignore[index]


def test_websocket_traced_under_this_package_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    """A websocket connection is one SERVER span named by its route, under platform-otel's scope (not FastAPI's own)."""

    def talk(client: TestClient) -> list[Any]:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            return [ws.receive_text()]

    runs = three_ways(monkeypatch, talk)
    assert_fast_equals_sdk(runs)
    assert runs["fast"].responses == ["HI"]
    (span,) = runs["fast"].spans
    assert span.name == "/ws"
    # (The official instrumentation names it "HTTP /ws": its method rule meets a scope with no method.)
    assert runs["official"].spans[0].attributes["http.route"] == "/ws"  # type: ignore[index]
    assert span.attributes["http.route"] == "/ws"  # type: ignore[index]
    assert span.instrumentation_scope.name == "platform_otel.instrumentation.fastapi"  # type: ignore[union-attr]


def test_span_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Span limits apply the same way: attribute count and value length, oldest attribute dropped."""
    limits = SpanLimits(max_span_attributes=6, max_span_attribute_length=4)
    runs = three_ways(monkeypatch, lambda c: [c.get("/renamed").json()], limits=limits)
    assert_fast_equals_sdk(runs)
    span = runs["fast"].spans[0]
    assert len(span.attributes or {}) == 6
    assert span.dropped_attributes > 0
    assert all(len(v) <= 4 for v in (span.attributes or {}).values() if isinstance(v, str))


def test_sampler_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sampler's DROP decision is honoured identically: no span exported, processors not called."""
    runs = three_ways(
        monkeypatch,
        lambda c: [c.get("/drop").json(), c.get("/items/2").json()],
        sampler=RecordingSampler(),
    )
    assert_fast_equals_sdk(runs)
    assert_like_official(runs)
    assert [s.name for s in runs["fast"].spans] == ["GET /items/{item_id}"]
    assert runs["fast"].processor.ended == ["GET /items/{item_id}"]
