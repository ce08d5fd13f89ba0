"""An MCP tool server over stdio, its own service (``mcp-tool-server``) with its own init().

Its spans and log lines join the caller's trace: the MCP client puts the trace
context in each request's ``params._meta`` and the server continues it. Works
with mcp 1.x (``FastMCP``) and 2.x (``MCPServer``).
"""

# No "from __future__ import annotations": FastMCP (1.x) reads tool annotations as real types.

import logging

from opentelemetry import trace

import platform_otel

# No console handler: its lines would go to stderr, which the MCP client passes through
# to its own terminal. The records are still exported over OTLP (docs/mcp.md).
platform_otel.init(service_name="mcp-tool-server", log_console="never")

try:
    from mcp.server.mcpserver import MCPServer as Server  # mcp 2.x
except ImportError:
    from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

log = logging.getLogger("example.mcp_tools.server")
tracer = trace.get_tracer("example.mcp_tools.server")
server = Server("mcp-tool-server")

CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}


@server.tool()
def word_count(text: str) -> int:
    """Count the words of a text."""
    with tracer.start_as_current_span("count words") as span:  # a child of the server span
        words = len(text.split())
        span.set_attribute("app.words", words)
    log.info("counted %d words", words)  # exported with the caller's trace id
    return words


@server.tool()
def capital_of(country: str) -> str:
    """The capital city of a country; an unknown country is a tool error."""
    capital = CAPITALS.get(country.lower())
    if capital is None:
        log.warning("no capital known for %s", country, extra={"app.country": country})
        raise ValueError(f"unknown country: {country}")
    return capital


if __name__ == "__main__":
    server.run("stdio")
