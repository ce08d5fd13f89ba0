"""An MCP client calling tools of a server process over stdio, one trace across both processes.

    python examples/mcp_tools/run.py

This process (service ``mcp-client``) starts ``server.py`` (service
``mcp-tool-server``) over stdio and calls its tools inside one span of its own. With
platform-otel's ``init()`` in both processes, the server's spans and log records are
part of the client's trace: nothing else is wired by hand.

Telemetry goes to the usual OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, default
``localhost:4317``); nothing needs to listen there for this to run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import platform_otel

telemetry = platform_otel.init(service_name="mcp-client")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor  # noqa: E402

SERVER = Path(__file__).resolve().with_name("server.py")
tracer = trace.get_tracer("example.mcp_tools")


class Recorder(SpanProcessor):
    """Keeps this process's finished spans, to print the client's half of the trace."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def print_tree(spans: list[ReadableSpan], trace_id: int) -> None:
    mine = sorted(
        (s for s in spans if s.context.trace_id == trace_id), key=lambda s: s.start_time or 0
    )
    ids = {s.context.span_id for s in mine}

    def show(parent: int | None, depth: int) -> None:
        for span in mine:
            parent_id = span.parent.span_id if span.parent else None
            if (parent_id if parent_id in ids else None) == parent:
                print(f"  {'  ' * depth}{span.name}  [{span.kind.name}]")
                show(span.context.span_id, depth + 1)

    show(None, 0)


def text_of(result: object) -> str:
    content = getattr(result, "content", None) or []
    return " ".join(getattr(c, "text", "") for c in content)


def is_error(result: object) -> bool:
    """``CallToolResult.is_error`` (mcp 2.x), ``isError`` (mcp 1.x)."""
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", False))


async def main() -> int:
    recorder = Recorder()
    trace.get_tracer_provider().add_span_processor(recorder)  # type: ignore[attr-defined]
    # env: the server is configured like this process (OTEL_* included); by default the
    # MCP SDK passes the server only a few variables such as PATH and HOME.
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=dict(os.environ))
    with tracer.start_as_current_span("answer questions") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        async with stdio_client(params) as (read, write, *_), ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            print("tools:", ", ".join(t.name for t in tools.tools))
            calls = [
                ("word_count", {"text": "the quick brown fox jumps over the lazy dog"}),
                ("capital_of", {"country": "Kenya"}),
                ("capital_of", {"country": "Atlantis"}),  # a tool error: isError, span status ERROR
            ]
            for name, arguments in calls:
                result = await session.call_tool(name, arguments)
                status = "tool error" if is_error(result) else "ok"
                print(f"  {name}({arguments}) -> {text_of(result)!r} [{status}]")
    telemetry.shutdown()

    print(f"\none trace for the whole conversation: trace_id {trace_id}")
    print("this process's spans (mcp-client):")
    print_tree(recorder.spans, int(trace_id, 16))
    print(
        "the server's spans (mcp-tool-server, exported by the server process) are children of\n"
        "the tools/call CLIENT spans above: 'tools/call <tool>' [SERVER], and under\n"
        "word_count's, 'count words'; the tool's log records carry the same trace id"
    )
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    print(f"spans, metrics and logs were exported over OTLP to {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
