"""A small real MCP server for the MCP tests, on mcp 1.x (``FastMCP``) or 2.x (``MCPServer``).

Run as ``python tests/support/mcp_server.py stdio`` (MCP over stdin/stdout) or
``... http`` (streamable HTTP on a free 127.0.0.1 port, printed as ``PORT <n>``
on stdout). Telemetry comes from ``platform_otel.init()`` configured by the
``OTEL_*`` environment, so the test's OTLP receiver gets the server's spans and
metrics; they are flushed when the process exits (stdin closed, or SIGTERM).

Tools:
* ``convert(text)``: opens its own span ``convert.work`` and returns the ids of
  the span that was current when the handler started (the server span) and of
  its own span, as JSON, so tests can check the handler's parentage.
* ``echo_meta()``: returns the request's ``_meta`` as received.
* ``fail(text)``: raises, which the SDK turns into a result with ``isError``.
"""

# No "from __future__ import annotations": older FastMCP (1.x) inspects tool
# annotations as real types, not strings.

import json
import logging
import signal
import socket
import sys
from typing import Any

from opentelemetry import trace

import platform_otel

try:  # the handler-context type the SDK injects into tools that ask for it
    from mcp.server.mcpserver import Context  # mcp 2.x
except ImportError:
    from mcp.server.fastmcp import Context  # mcp 1.x

__all__ = ["build_server", "main"]

log = logging.getLogger("tests.mcp_server")


def _ids(span: trace.Span) -> dict[str, str]:
    ctx = span.get_span_context()
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def build_server() -> Any:
    """The tool server for the installed mcp major version."""
    try:
        from mcp.server.mcpserver import MCPServer as Server  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

    server = Server("platform-otel-test")
    tracer = trace.get_tracer("tests.mcp_server")

    @server.tool()
    def convert(text: str) -> str:
        """Upper-case ``text``; report the handler's span ids."""
        handler = _ids(trace.get_current_span())
        log.warning(
            "converting %d characters", len(text)
        )  # exported, correlated with the server span
        with tracer.start_as_current_span("convert.work") as work:
            inner = _ids(work)
            return json.dumps({"handler": handler, "inner": inner, "text": text.upper()})

    @server.tool()
    def echo_meta(ctx: Context) -> str:  # type: ignore[type-arg]
        """Return the request's ``_meta`` as the server received it."""
        meta: Any = ctx.request_context.meta
        if hasattr(meta, "model_dump"):
            meta = meta.model_dump(by_alias=True, exclude_none=True)
        return json.dumps(dict(meta or {}))

    @server.tool()
    def fail(text: str) -> str:
        """Always fails (a tool error, not a protocol error)."""
        raise ValueError(f"cannot convert {text!r}")

    @server.prompt()
    def summary(topic: str) -> str:
        """A prompt (``prompts/get``), for the telemetry reference's names."""
        return f"Summarise what is known about {topic}."

    return server


def _serve_http(server: Any) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the
    # default handler that kills the process before platform_otel.shutdown()
    # flushes. A no-op handler lets run() return so the flush happens.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str]) -> int:
    transport = argv[1] if len(argv) > 1 else "stdio"
    # Console logging must never touch stdout: it is the MCP channel on stdio.
    platform_otel.init(service_name="mcp-test-server", log_console="never")
    server = build_server()
    try:
        if transport == "stdio":
            # Older stdio clients (mcp < 1.10) terminate the server instead of closing its
            # stdin: exit normally on SIGTERM so the finally block flushes telemetry.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            server.run("stdio")
        else:
            _serve_http(server)
    finally:
        platform_otel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
