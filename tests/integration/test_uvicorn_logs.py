"""uvicorn's own log lines are correlated: each access line carries the trace of its request."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import (
    free_port,
    http_get,
    otel_env,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

APP = """
import logging
import platform_otel
platform_otel.init(service_name="web")
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict:
    logging.getLogger("web").warning("in handler")
    return {"ok": True}
"""

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize("export_access", [False, True], ids=["default", "export-access"])
def test_uvicorn_access_line_carries_incoming_trace_id(
    otlp_grpc_receiver: OtlpReceiver, tmp_path: Path, export_access: bool
) -> None:
    """A request with a traceparent: uvicorn's access line and the handler's log carry that trace id.

    Over OTLP the handler's record is exported; the access line only with
    PLATFORM_OTEL_LOG_EXPORT_ACCESS=true (by default the server span carries its facts).
    """
    (tmp_path / "web_app.py").write_text(APP, encoding="utf-8")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "web_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-dir",
        str(tmp_path),
    ]
    env = otel_env(otlp_grpc_receiver, service_name="web")
    if export_access:
        env["PLATFORM_OTEL_LOG_EXPORT_ACCESS"] = "true"
    with start_process(argv, env, cwd=tmp_path) as server:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        status, _ = http_get(
            f"http://127.0.0.1:{port}/hello",
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
        )
        assert status == 200
        spans = otlp_grpc_receiver.wait_for(
            lambda r: [s for s in r.spans() if s.trace_id == TRACE_ID and s.kind == "SERVER"], 10
        )
        handler_records = otlp_grpc_receiver.wait_for(
            lambda r: [lg for lg in r.logs() if "in handler" in str(lg.body)], 10
        )
        if export_access:
            otlp_grpc_receiver.wait_for(
                lambda r: [lg for lg in r.logs() if "GET /hello" in str(lg.body)], 10
            )
        server.stop()
    access = [lg for lg in otlp_grpc_receiver.logs() if "GET /hello" in str(lg.body)]

    lines = [line for line in server.output.splitlines() if "GET /hello" in line]
    assert len(lines) == 1, f"expected one access line for /hello:\n{server}"
    assert f"trace_id={TRACE_ID}" in lines[0], (
        f"access line lacks the request's trace id:\n{server}"
    )
    server_span = spans[0]
    assert server_span.parent_span_id == PARENT_SPAN
    assert re.search(rf"span_id={server_span.span_id}\b", lines[0]), str(server)

    handler = [line for line in server.output.splitlines() if "in handler" in line]
    assert len(handler) == 1 and f"trace_id={TRACE_ID}" in handler[0], str(server)

    assert handler_records[0].trace_id == TRACE_ID
    if not export_access:
        assert access == [], "access line exported although its server span was"
        return
    assert len(access) == 1, f"access line exported {len(access)} times"
    assert access[0].trace_id == TRACE_ID and access[0].span_id == server_span.span_id
    assert access[0].scope == "uvicorn.access"
