"""A FastAPI service with platform-otel: one line of setup, nothing else to wire.

``GET /hello/{name}`` calls ``GET /greeting`` on this same service over HTTP with
httpx, as a service calls another one. The three spans (the request, the httpx
call, the called request) form one trace: httpx puts the trace context in the
``traceparent`` header and the called route continues it, even when another
worker process answers. The route's log line carries the trace id.

Serve it with ``uvicorn app:app --app-dir examples/fastapi_service --workers 2``
(``run.py`` does that for you, sends a few requests and stops it).
"""

from __future__ import annotations

import logging
import os

import platform_otel

# The one line. Call it before importing the web framework and the HTTP client,
# so they are instrumented from their first use. Under ``uvicorn --workers N``
# each worker imports this module, so each worker runs init() itself and gets its
# own service.instance.id.
telemetry = platform_otel.init(service_name="fastapi-example")

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from opentelemetry import trace  # noqa: E402

log = logging.getLogger("example.fastapi_service")
app = FastAPI(title="fastapi-example")

# Where /hello calls out to: this same service by default (``run.py`` sets the port).
UPSTREAM = os.environ.get("APP_UPSTREAM_URL", "http://127.0.0.1:8000")
INSTANCE_ID = str(telemetry.resource.attributes.get("service.instance.id", ""))


@app.get("/hello/{name}")
async def hello(name: str) -> dict[str, str | int]:
    """Calls ``/greeting`` over HTTP; the called request joins this request's trace."""
    async with httpx.AsyncClient(base_url=UPSTREAM, timeout=5.0) as client:
        response = await client.get("/greeting", params={"name": name})
        response.raise_for_status()
    # extra= keys become attributes of the exported log record.
    log.info("greeted %s", name, extra={"app.visitor": name})
    span = trace.get_current_span().get_span_context()
    return {
        "name": name,
        "greeting": response.json()["greeting"],
        "trace_id": format(span.trace_id, "032x"),
        "pid": os.getpid(),
        "service_instance_id": INSTANCE_ID,
    }


@app.get("/greeting")
async def greeting(name: str) -> dict[str, str | int]:
    """The downstream call: its server span is a child of the caller's httpx span."""
    return {"greeting": f"Hello, {name}!", "pid": os.getpid()}
