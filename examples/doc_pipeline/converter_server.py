"""MCP server with a ``convert_document`` tool, run over stdio by the pipeline's worker.

A stand-in for a markitdown-style converter: plain text in, Markdown out. It is
its own service (``doc-converter``) with its own ``platform_otel.init()``; its
spans join the caller's trace through the context the MCP client puts in each
request's ``_meta``. Works with mcp 1.x (``FastMCP``) and 2.x (``MCPServer``).
"""

# No "from __future__ import annotations": older FastMCP (1.x) inspects tool
# annotations as real types, not strings.

import logging

from opentelemetry import trace

import platform_otel

# No console handler: its lines would go to stderr, which the MCP client passes through
# to its own terminal. The records are still exported over OTLP (docs/mcp.md).
platform_otel.init(service_name="doc-converter", log_console="never")

try:
    from mcp.server.mcpserver import MCPServer as Server  # mcp 2.x
except ImportError:
    from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

log = logging.getLogger("doc_converter")
tracer = trace.get_tracer("doc_converter")
server = Server("doc-converter")


@server.tool()
def convert_document(name: str, text: str) -> str:
    """Convert a plain-text document to Markdown; an empty document is a tool error."""
    if not text.strip():
        log.warning("rejected %s: empty document", name)
        raise ValueError(f"document {name!r} is empty")
    with tracer.start_as_current_span("render markdown") as span:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        span.set_attribute("doc.paragraphs", len(paragraphs))
        markdown = "\n\n".join([f"# {name}", *paragraphs])
    log.info("converted %s: %d paragraphs", name, len(paragraphs))
    return markdown


if __name__ == "__main__":
    server.run("stdio")
