"""The request path as a user deploys it: ``init()``, OTLP to a real receiver, fast path vs SDK path.

One script runs every scenario a user would check (a plain route, ``update_name``
and other span calls from the route, an excluded URL, captured headers, hooks, a span
processor added to the provider after ``init()``, a websocket, an exception) through
``init()``'s real pipeline (the fast path queues spans already encoded; the SDK path
is forced with ``PLATFORM_OTEL_OTLP_ENCODER=official``). What reaches the receiver
must be the same, ids and times aside, and must be what the user asked for.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.documented import assert_documented, assert_span_names_documented
from tests.support.fixtures import otel_env, run_python
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

APP = """
import logging
import platform_otel
from opentelemetry.sdk.trace import SpanProcessor

seen_at_start = []

class UserProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None):
        seen_at_start.append((span.name, span.attributes.get("http.route")))

def request_hook(span, scope):
    span.set_attribute("hook.request", scope["path"])

def response_hook(span, scope, message):
    span.set_attribute("hook.status", message["status"])

telemetry = platform_otel.init(
    service_name="wire", server_request_hook=request_hook, server_response_hook=response_hook
)
telemetry.tracer_provider.add_span_processor(UserProcessor())

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

app = FastAPI()

@app.get("/items/{item_id}")
def item(item_id: int):
    return {"item_id": item_id}

@app.get("/renamed")
def renamed():
    span = trace.get_current_span()
    span.update_name("renamed by app")
    span.set_attribute("app.key", "v")
    span.add_event("app.event")
    span.set_status(Status(StatusCode.ERROR, "app says so"))
    return {}

@app.get("/health")
def health():
    return {}

@app.get("/headers")
def headers():
    return JSONResponse({}, headers={"x-out": "o", "set-cookie": "s=1"})

@app.get("/boom")
def boom():
    raise RuntimeError("boom")

@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()

with TestClient(app, raise_server_exceptions=False) as client:
    client.get("/items/1")
    client.get("/renamed")
    client.get("/health")
    client.get("/headers", headers={"x-in": "i", "authorization": "secret"})
    client.get("/boom")
    with client.websocket_connect("/ws") as socket:
        socket.receive_text()
print("SEEN_AT_START=" + repr(seen_at_start))
platform_otel.shutdown()
"""

ENV = {
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "/health",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-in,authorization",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "x-out,set-cookie",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization,set-cookie",
}


def _server_spans(receiver: OtlpReceiver, path: str) -> list[dict[str, Any]]:
    out = []
    for span in receiver.spans():
        if span.kind != "SERVER" or span.resource.get("path") != path:
            continue
        attributes = {k: v for k, v in span.attributes.items() if k not in ("client.port",)}
        events = [
            (
                e["name"],
                {k: v for k, v in e.get("attributes", {}).items() if k != "exception.stacktrace"},
            )
            for e in span.events
        ]
        out.append(
            {
                "name": span.name,
                "scope": span.scope,
                "attributes": attributes,
                "status": (span.status_code, span.status_message),
                "events": events,
            }
        )
    return sorted(out, key=lambda s: s["name"])


def test_fast_path_and_sdk_path_put_the_same_spans_on_the_wire(
    otlp_grpc_receiver: OtlpReceiver,
) -> None:
    """Every scenario gives the same server spans at the receiver on both paths, and the ones the user asked for."""
    results = {}
    for path, encoder in (("fast", "fast"), ("sdk", "official")):
        env = otel_env(
            otlp_grpc_receiver,
            service_name="wire",
            PLATFORM_OTEL_OTLP_ENCODER=encoder,
            OTEL_RESOURCE_ATTRIBUTES=f"path={path}",
            **ENV,
        )
        result = run_python(APP, env, timeout=60)
        assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
        results[path] = result
        otlp_grpc_receiver.wait_for(lambda r, p=path: len(_server_spans(r, p)) == 5, 10)
    fast, sdk = _server_spans(otlp_grpc_receiver, "fast"), _server_spans(otlp_grpc_receiver, "sdk")
    assert fast == sdk
    seen = results["fast"].stdout.split("SEEN_AT_START=")[1].strip()
    assert seen == results["sdk"].stdout.split("SEEN_AT_START=")[1].strip()
    assert "('GET /items/{item_id}', '/items/{item_id}')" in seen

    by_name = {s["name"]: s for s in fast}
    assert set(by_name) == {
        "GET /items/{item_id}",
        "renamed by app",
        "GET /headers",
        "GET /boom",
        "/ws",
    }  # /health excluded
    renamed = by_name["renamed by app"]
    assert renamed["attributes"]["app.key"] == "v"
    assert renamed["status"] == (2, "app says so")
    assert [e[0] for e in renamed["events"]] == ["app.event"]
    headers = by_name["GET /headers"]["attributes"]
    assert headers["http.request.header.x_in"] == ["i"]
    assert headers["http.request.header.authorization"] == ["[REDACTED]"]
    assert headers["http.response.header.x_out"] == ["o"]
    assert headers["http.response.header.set_cookie"] == ["[REDACTED]"]
    assert headers["hook.request"] == "/headers" and headers["hook.status"] == 200
    boom = by_name["GET /boom"]
    assert boom["status"][0] == 2 and boom["attributes"]["error.type"] == "RuntimeError"
    assert [e[0] for e in boom["events"]] == ["exception"]
    assert by_name["/ws"]["scope"] == "platform_otel.instrumentation.fastapi"
    emitted = {k for span in fast for k in span["attributes"]}
    emitted |= {e[0] for span in fast for e in span["events"]}
    emitted |= {k for span in fast for e in span["events"] for k in e[1]}
    assert_documented(emitted, ignore_prefixes=("app.", "hook."))
    assert_span_names_documented(
        [(s["name"], s["attributes"]) for s in fast if s["name"] != "renamed by app"]
    )
