"""httpx and requests integrations: client spans with stable HTTP names, and traceparent sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from platform_otel._config import InitOptions, load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.testing import Capture, capture
from tests.support.documented import assert_documented


class _Echo(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:
        _Echo.seen.append(self.headers.get("traceparent"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Echo.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture(autouse=True)
def fresh_semconv_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Contrib instrumentors read OTEL_SEMCONV_STABILITY_OPT_IN once per process; let
    this test see the value init() makes them see when it is unset ("http":
    tests/test_sdk_env.py checks that through init()), whatever other tests did before."""
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(Stability, "_initialized", False)
    yield
    Stability._initialized = False


def _ctx(cap: Capture) -> InstrumentationContext:
    settings = load_settings({}, InitOptions(service_name="t", capture_content=False))
    return InstrumentationContext(settings, cap.tracer_provider, cap.meter_provider, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_client_span_and_traceparent(library: str, server: str) -> None:
    """A request inside a span makes one CLIENT child span and sends that span's traceparent."""
    import importlib

    integration = importlib.import_module(f"platform_otel.instrumentation.{library}")
    cap = capture()
    integration.instrument(_ctx(cap))
    try:
        client = importlib.import_module(library)
        with cap.tracer_provider.get_tracer("t").start_as_current_span("parent") as parent:
            response = client.get(server + "/items/7")
        assert response.status_code == 200
    finally:
        integration.uninstrument()
    spans = {s.name: s for s in cap.spans()}
    child = spans["GET"]
    assert child.parent is not None and child.parent.span_id == parent.get_span_context().span_id
    assert child.attributes is not None
    assert child.attributes["http.request.method"] == "GET"
    assert child.attributes["http.response.status_code"] == 200
    trace_hex = format(parent.get_span_context().trace_id, "032x")
    assert _Echo.seen and _Echo.seen[0] is not None and trace_hex in _Echo.seen[0]
    assert "http.client.request.duration" in cap.metrics()
    points = cap.metrics()["http.client.request.duration"]
    metric_attrs = {k for p in points for k in (p.attributes or {})}
    assert_documented({"http.client.request.duration", *child.attributes, *metric_attrs})


def test_uninstrument_stops_tracing(server: str) -> None:
    """After uninstrument(), requests are no longer traced."""
    import httpx

    from platform_otel.instrumentation import httpx as integration

    cap = capture()
    integration.instrument(_ctx(cap))
    integration.uninstrument()
    httpx.get(server)
    assert cap.spans() == []
