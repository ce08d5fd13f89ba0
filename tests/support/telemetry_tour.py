"""A tour of platform-otel's public API that emits what the examples do not.

``tests/test_telemetry_names.py`` runs the examples and this program against a real
OTLP receiver and checks every name that arrives against docs/telemetry.md, both
ways. The examples show the common paths; this program adds the configurations
and error paths they leave out, through the public API only:

* HTTP server: header capture (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``, set
  by the test), a method outside the standard set, an exception, a WebSocket route;
* HTTP clients: httpx and requests against a local server;
* pipelines: batch stages with per-outcome counts, consumer stages with a carrier,
  an exception;
* logs: ``exc_info``, structlog (``structlog_processor``) and loguru;
* Ollama: ``capture_content`` (set by the test), sampling options, ``system=``, a
  refused connection;
* GPU: the stand-in pynvml (one GPU, so spans and latency histograms name it, and a
  process NVML cannot name);
* MCP: streamable HTTP to ``tests/support/mcp_server.py``, a prompt, a tool error and
  JSON-RPC errors.
* data stores (``STORE_POSTGRES_DSN``, ``STORE_MYSQL_PORT``, ``STORE_MEMCACHED_PORT``:
  the test suite's real servers, tests/support/datastores.py): a statement each.

Run it with the OTLP variables pointing at a receiver and ``PLATFORM_OTEL_PROMETHEUS_PORT``
set: it scrapes its own in-process Prometheus endpoint (while the simulated Ollama runs,
and at the end) and prints the metric family names it served as one ``INPROCESS <json>`` line, which the test compares with
the reference's Prometheus column.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import platform_otel

HERE = Path(__file__).resolve().parent
log = logging.getLogger("tour")


def http_server() -> None:
    from fastapi import FastAPI, WebSocket
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    # FastAPI reads the parameter's type to pass the WebSocket (annotations are strings here).
    ws.__annotations__["websocket"] = WebSocket
    app.websocket("/ws")(ws)

    client = TestClient(app, raise_server_exceptions=False)
    client.get("/items/1", headers={"X-Request-Tag": "tour", "Authorization": "secret"})
    client.get("/boom")
    client.get("/nowhere")
    client.request("FOO", "/items/2")
    with client.websocket_connect("/ws") as socket_:
        socket_.send_text("hi")
        socket_.receive_text()


class _Plain(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def http_clients() -> None:
    import httpx
    import requests

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/plain"
    try:
        httpx.get(url)
        requests.get(url, timeout=5)
    finally:
        server.shutdown()


def pipelines() -> None:
    pipe = platform_otel.pipeline("tour")
    pipe.observe_queue("inbox", depth=lambda: 3)
    carrier: dict[str, str] = {}
    with pipe.stage("produce", item_id="a-1"):
        pipe.inject(carrier, enqueued_at=time.time())
    with pipe.stage("consume", item_id="a-1", carrier=carrier, enqueued_at=time.time() - 0.2):
        pass
    with pipe.batch("load", size=5, enqueued_at=time.time() - 0.5) as run:
        run.add_items(2, outcome="failure")
    try:
        with pipe.stage("consume", item_id="a-2"):
            raise ValueError("bad item")
    except ValueError:
        pass


def logs() -> None:
    import structlog
    from loguru import logger

    from platform_otel.logs import instrument_loguru, structlog_processor

    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("lookup failed", extra={"app.key": "k"})
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog_processor,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )  # fmt: skip
    structlog.get_logger("tour.structlog").info("structured", **{"app.step": 1})
    instrument_loguru(logger)
    logger.bind(**{"app.step": 2}).info("from loguru")


def ollama_calls() -> None:
    import ollama

    from platform_otel._ollama_sim import SimulatedOllama

    with SimulatedOllama(latency_s=0.02, chunks=4, load_s=0.05) as sim:
        client = ollama.Client(host=sim.url)
        options = {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "seed": 7, "num_predict": 8}
        messages = [{"role": "user", "content": "Hello?"}]
        client.chat(model="tiny", messages=messages, options=options)
        for _chunk in client.generate(model="tiny", prompt="Hi", system="Be brief.", stream=True):
            pass
        time.sleep(0.6)  # a /api/ps poll (PLATFORM_OTEL_OLLAMA_PS_INTERVAL): the residency gauges
        scrape_in_process_prometheus()  # while the server answers: its models are listed
    with socket.socket() as s:  # a port nobody listens on: a refused connection
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    try:
        ollama.Client(host=f"http://127.0.0.1:{refused}").chat(model="tiny", messages=messages)
    except Exception:
        pass


async def _mcp_session(url: str) -> None:
    from mcp import ClientSession

    try:
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:  # mcp < 1.24
        from mcp.client.streamable_http import (  # type: ignore[attr-defined,no-redef]
            streamablehttp_client as streamable_http_client,
        )

    async with (
        streamable_http_client(url) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        await session.call_tool("convert", {"text": "hello"})
        await session.call_tool("fail", {"text": "x"})  # a tool error (isError)
        await session.get_prompt("summary", {"topic": "gpus"})
        for bad in (
            lambda: session.get_prompt("no-such-prompt", {}),  # JSON-RPC error
            lambda: session.call_tool("convert", {}),  # invalid arguments
        ):
            try:
                await bad()
            except Exception:
                pass


def mcp_calls() -> None:
    env = dict(os.environ, OTEL_SERVICE_NAME="tour-mcp-server")
    env.pop("PLATFORM_OTEL_PROMETHEUS_PORT", None)
    server = subprocess.Popen(
        [sys.executable, str(HERE / "mcp_server.py"), "http"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = re.search(r"PORT (\d+)", server.stdout.readline())
        assert port, "the MCP server did not print its port"
        asyncio.run(_mcp_session(f"http://127.0.0.1:{port.group(1)}/mcp"))
    finally:
        server.terminate()
        server.wait(15)


def data_stores() -> None:
    if dsn := os.environ.get("STORE_POSTGRES_DSN"):
        import psycopg

        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT %s::text", ("tour",)).fetchone()
    if port := os.environ.get("STORE_MYSQL_PORT"):
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=int(port), user="root")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT %s", ("tour",))
        finally:
            conn.close()
    if port := os.environ.get("STORE_MEMCACHED_PORT"):
        from pymemcache.client.base import Client

        client = Client(("127.0.0.1", int(port)))
        client.set("tour", b"1")
        client.get("tour")


SERVED: set[str] = set()


def scrape_in_process_prometheus() -> None:
    """Add the metric family names on this process's own endpoint (``prometheus_port``) to SERVED."""
    port = os.environ["PLATFORM_OTEL_PROMETHEUS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    SERVED.update(m.group(1) for m in re.finditer(r"(?m)^([a-zA-Z_:][\w:]*)[{ ]", text))


def main() -> int:
    telemetry = platform_otel.init(service_name="telemetry-tour")
    steps = (http_server, http_clients, pipelines, logs, ollama_calls, mcp_calls, data_stores)
    for step in steps:
        step()
    time.sleep(1.2)  # the GPU sampler's samples after the last call; one more metric export
    scrape_in_process_prometheus()
    telemetry.shutdown()
    print("INPROCESS " + json.dumps(sorted(SERVED)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
