"""MCP integration against the real ``mcp`` SDK (1.x or 2.x, whichever this venv has).

The client runs in the test process with in-memory providers passed to
``instrument()``; the server (tests/support/mcp_server.py) is a separate process
that calls ``platform_otel.init()`` and exports over OTLP to a real receiver, so
trace continuity is checked across processes, over stdio and streamable HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from platform_otel._config import InitOptions, load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import mcp as mcp_integration
from tests.support.documented import assert_documented
from tests.support.fixtures import REPO_ROOT, Server, child_env, otel_env, start_process
from tests.support.otlp_receiver import ExportedLog, ExportedPoint, ExportedSpan, OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MCP_MAJOR = int(version("mcp").split(".")[0])
SERVER_SCRIPT = REPO_ROOT / "tests" / "support" / "mcp_server.py"
BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
# Bounded attributes only: no request ids, session ids or URIs on metrics.
METRIC_ATTRIBUTE_KEYS = {
    "mcp.method.name",
    "gen_ai.tool.name",
    "gen_ai.prompt.name",
    "gen_ai.operation.name",
    "mcp.protocol.version",
    "network.transport",
    "error.type",
    "rpc.response.status_code",
}
MCP_SCOPES = {"platform_otel.mcp", "mcp-python-sdk"}


@dataclass
class Telemetry:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self) -> list[tuple[str, dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        out: list[tuple[str, dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.extend(
                        (metric.name, dict(p.attributes or {}), p) for p in metric.data.data_points
                    )
        return out


def _providers() -> Telemetry:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return Telemetry(exporter, reader, tracer_provider, MeterProvider(metric_readers=[reader]))


def _ctx(t: Telemetry) -> InstrumentationContext:
    settings: Any = load_settings(
        {}, InitOptions(service_name="mcp-test-client", capture_content=False, environment="test")
    )
    return InstrumentationContext(settings, t.tracer_provider, t.meter_provider, None)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = _providers()
    assert mcp_integration.instrument(_ctx(t)) is None
    try:
        yield t
    finally:
        mcp_integration.uninstrument()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _client_span_name(method: str, target: str | None = None) -> str:
    """mcp 2.x names its own client spans ``MCP send ...``; on 1.x we follow the semconv pattern."""
    base = f"{method} {target}" if target else method
    return f"MCP send {base}" if MCP_MAJOR >= 2 else base


# --------------------------------------------------------------------------- real client/server run


@dataclass
class Run:
    """What one client session against the out-of-process server produced."""

    transport: str
    convert: dict[str, Any]
    fail_is_error: bool
    client_spans: list[ReadableSpan]
    client_points: list[tuple[str, dict[str, Any], Any]]
    server_spans: list[ExportedSpan]
    server_points: list[ExportedPoint]
    server_logs: list[ExportedLog]
    server_output: str = ""

    def client_span(self, method: str, target: str | None = None) -> ReadableSpan:
        name = _client_span_name(method, target)
        found = [s for s in self.client_spans if s.name == name and s.kind is SpanKind.CLIENT]
        assert len(found) == 1, (
            f"expected one client span {name!r}, got {[s.name for s in self.client_spans]}"
        )
        return found[0]

    def server_span(self, name: str) -> ExportedSpan:
        found = [s for s in self.server_spans if s.name == name and s.kind == "SERVER"]
        assert len(found) == 1, (
            f"expected one server span {name!r}, got {[s.name for s in self.server_spans]}"
        )
        return found[0]


@asynccontextmanager
async def _connect(transport: str, target: Any, errlog: Any) -> AsyncIterator[Any]:
    from mcp import ClientSession

    if transport == "stdio":
        from mcp.client.stdio import stdio_client

        async with (
            stdio_client(target, errlog=errlog) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            yield session
    else:
        try:
            from mcp.client.streamable_http import streamable_http_client
        except ImportError:  # mcp < 1.24 only has the older name
            from mcp.client.streamable_http import (  # type: ignore[attr-defined,no-redef]
                streamablehttp_client as streamable_http_client,
            )

        async with (
            streamable_http_client(target) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            yield session


async def _session(transport: str, target: Any, errlog: Any) -> tuple[dict[str, Any], bool]:
    async with _connect(transport, target, errlog) as session:
        await session.initialize()
        converted = await session.call_tool("convert", {"text": "hello"})
        failed = await session.call_tool("fail", {"text": "x"})
    text = converted.content[0].text
    is_error = getattr(failed, "isError", None) or getattr(failed, "is_error", None)
    return json.loads(text), bool(is_error)


def _wait_server_flushed(receiver: OtlpReceiver) -> None:
    """The server exports its session metric at exit; wait for it (and so for everything before)."""
    receiver.wait_for(
        lambda r: (
            [p for p in r.metrics() if p.name == "mcp.server.session.duration" and p.count]
            and [x for x in r.logs() if str(x.body).startswith("converting ")]
        ),
        timeout=15,
    )


def _run(transport: str, tmp_path: Path) -> Run:
    from mcp import StdioServerParameters

    t = _providers()
    assert mcp_integration.instrument(_ctx(t)) is None
    try:
        with OtlpReceiver("http") as receiver:
            env = otel_env(receiver, service_name="mcp-test-server")
            errfile = tmp_path / f"server-{transport}.err"
            if transport == "stdio":
                params = StdioServerParameters(
                    command=sys.executable, args=[str(SERVER_SCRIPT), "stdio"], env=child_env(env)
                )
                with errfile.open("w") as errlog:
                    convert, fail_is_error = asyncio.run(_session("stdio", params, errlog))
                _wait_server_flushed(receiver)
                output = errfile.read_text()
            else:
                with start_process([sys.executable, str(SERVER_SCRIPT), "http"], env) as server:
                    url = _wait_port(server)
                    convert, fail_is_error = asyncio.run(_session("http", url, None))
                    server.stop()
                    output = server.output
                _wait_server_flushed(receiver)
            return Run(
                transport,
                convert,
                fail_is_error,
                t.spans(),
                t.points(),
                receiver.spans(),
                _latest(receiver.metrics()),
                receiver.logs(),
                output,
            )
    finally:
        mcp_integration.uninstrument()


def _latest(points: list[ExportedPoint]) -> list[ExportedPoint]:
    """The last exported point of each series (cumulative metrics are re-sent every interval)."""
    last: dict[tuple[str, str], ExportedPoint] = {}
    for p in sorted(points, key=lambda p: p.time_unix_nano):
        last[(p.name, json.dumps(p.attributes, sort_keys=True))] = p
    return list(last.values())


def _wait_port(server: Server, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"PORT (\d+)", server.stdout)
        if match:
            return f"http://127.0.0.1:{match.group(1)}/mcp"
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"MCP HTTP server did not start:\n{server}")


@pytest.fixture(scope="module", params=["stdio", "http"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(request.param, tmp_path_factory.mktemp(f"mcp-{request.param}"))


# --------------------------------------------------------------------------- cross-process tests


def test_server_span_is_parented_on_client_span(run: Run) -> None:
    """A tool call forms one trace: the server's span (another process) is a child of the client's span."""
    client = run.client_span("tools/call", "convert")
    server = run.server_span("tools/call convert")
    assert server.trace_id == _hex(client.context.trace_id, 32)
    assert server.parent_span_id == _hex(client.context.span_id, 16)
    assert server.attributes["mcp.method.name"] == "tools/call"
    assert server.attributes["gen_ai.tool.name"] == "convert"
    assert server.attributes["gen_ai.operation.name"] == "execute_tool"
    assert server.attributes["jsonrpc.request.id"] == client.attributes["jsonrpc.request.id"]
    assert server.resource.get("service.name") == "mcp-test-server"


def test_tool_handler_spans_are_children_of_server_span(run: Run) -> None:
    """Inside the tool handler the server span is current, so the handler's own span is its child."""
    server = run.server_span("tools/call convert")
    assert run.convert["handler"] == {"trace_id": server.trace_id, "span_id": server.span_id}
    (work,) = [s for s in run.server_spans if s.name == "convert.work"]
    assert work.parent_span_id == server.span_id
    assert work.trace_id == server.trace_id


def test_tool_handler_logs_carry_the_server_span(run: Run) -> None:
    """A log record written inside the tool handler is exported with the server span's trace and span id."""
    server = run.server_span("tools/call convert")
    logs = [r for r in run.server_logs if str(r.body).startswith("converting ")]
    assert [(r.trace_id, r.span_id) for r in logs] == [(server.trace_id, server.span_id)]


def test_no_duplicate_spans(run: Run) -> None:
    """Each request yields exactly one client span and one server span (no double instrumentation)."""
    client = Counter((s.name, s.kind) for s in run.client_spans)
    server = Counter((s.name, s.kind) for s in run.server_spans if s.scope in MCP_SCOPES)
    assert client and all(n == 1 for n in client.values()), client
    assert server and all(n == 1 for n in server.values()), server
    # one server span per traced client request, and vice versa (same trace ids)
    client_traces = {
        _hex(s.context.trace_id, 32) for s in run.client_spans if s.kind is SpanKind.CLIENT
    }
    server_traces = {
        s.trace_id for s in run.server_spans if s.scope in MCP_SCOPES and s.parent_span_id
    }
    assert server_traces <= client_traces
    assert {
        _hex(run.client_span("tools/call", n).context.trace_id, 32) for n in ("convert", "fail")
    } <= server_traces
    # every span of the tool-call trace: client, server, handler; nothing doubled
    trace_id = _hex(run.client_span("tools/call", "convert").context.trace_id, 32)
    in_trace = [s.name for s in run.server_spans if s.trace_id == trace_id]
    assert sorted(in_trace) == ["convert.work", "tools/call convert"]


def test_tool_error_marks_spans_and_metrics(run: Run) -> None:
    """A tool result with isError=true sets error.type=tool_error and ERROR status; metrics carry it."""
    assert run.fail_is_error
    server = run.server_span("tools/call fail")
    assert server.attributes["error.type"] == "tool_error"
    assert server.status_code == StatusCode.ERROR.value
    if MCP_MAJOR == 1:  # on 2.x the SDK owns the client span and does not look at results
        client = run.client_span("tools/call", "fail")
        assert client.attributes["error.type"] == "tool_error"
        assert client.status.status_code is StatusCode.ERROR
    failed_client = [
        a
        for name, a, _ in run.client_points
        if name == "mcp.client.operation.duration" and a.get("gen_ai.tool.name") == "fail"
    ]
    assert [a.get("error.type") for a in failed_client] == ["tool_error"]
    failed_server = [
        p
        for p in run.server_points
        if p.name == "mcp.server.operation.duration"
        and p.attributes.get("gen_ai.tool.name") == "fail"
    ]
    assert [p.attributes.get("error.type") for p in failed_server] == ["tool_error"]
    ok = run.server_span("tools/call convert")
    assert "error.type" not in ok.attributes
    assert ok.status_code != StatusCode.ERROR.value


def test_operation_and_session_metrics(run: Run) -> None:
    """Both sides record operation and session durations, in seconds, with the MCP buckets and bounded attributes."""
    client = {
        (n, a.get("mcp.method.name"), a.get("gen_ai.tool.name")): p for n, a, p in run.client_points
    }
    convert = client[("mcp.client.operation.duration", "tools/call", "convert")]
    assert convert.count == 1
    assert 0 < convert.sum < 30
    assert list(convert.explicit_bounds) == BUCKETS
    sessions = [p for n, _, p in run.client_points if n == "mcp.client.session.duration"]
    assert [p.count for p in sessions] == [1]

    server = [
        p
        for p in run.server_points
        if p.name == "mcp.server.operation.duration"
        and p.attributes.get("gen_ai.tool.name") == "convert"
    ]
    assert [p.count for p in server] == [1]
    assert server[0].explicit_bounds == BUCKETS
    assert server[0].unit == "s"
    assert server[0].attributes["network.transport"] == (
        "pipe" if run.transport == "stdio" else "tcp"
    )
    server_sessions = [p for p in run.server_points if p.name == "mcp.server.session.duration"]
    assert sum(p.count or 0 for p in server_sessions) >= 1

    for _, attrs, _ in run.client_points:
        assert set(attrs) <= METRIC_ATTRIBUTE_KEYS, attrs
    for p in run.server_points:
        if p.name.startswith("mcp."):
            assert set(p.attributes) <= METRIC_ATTRIBUTE_KEYS, p.attributes


def test_server_span_attributes_per_transport(run: Run) -> None:
    """Our 1.x server spans say how the request arrived (pipe or tcp) and, over HTTP, the MCP session id."""
    server = run.server_span("tools/call convert")
    assert server.attributes.get("mcp.protocol.version")
    if MCP_MAJOR >= 2:
        pytest.skip("mcp 2.x's own server spans carry no network.transport / mcp.session.id")
    assert server.attributes["network.transport"] == ("pipe" if run.transport == "stdio" else "tcp")
    if run.transport == "http":
        assert server.attributes.get("mcp.session.id")
    else:
        assert "mcp.session.id" not in server.attributes


def test_server_reports_no_internal_errors(run: Run) -> None:
    """The instrumented server process logs no platform-otel internal error."""
    assert "platform-otel: internal error" not in run.server_output, run.server_output


def test_emitted_names_are_documented(run: Run) -> None:
    """Every span name pattern, attribute and metric the MCP integration emits is in docs/telemetry.md."""
    names: set[str] = set()
    spans: list[tuple[str, dict[str, Any], str]] = [
        (s.name, dict(s.attributes or {}), "CLIENT") for s in run.client_spans
    ]
    spans += [(s.name, s.attributes, s.kind) for s in run.server_spans if s.scope in MCP_SCOPES]
    for name, attrs, _kind in spans:
        names.update(attrs)
        method = str(attrs["mcp.method.name"])
        pattern = name.replace(method, "{mcp.method.name}", 1)
        for tool in ("convert", "fail"):  # the tools of tests/support/mcp_server.py
            pattern = re.sub(rf" {tool}$", " {target}", pattern)
        names.add(pattern)
    for metric, attrs, _ in run.client_points:
        names.add(metric)
        names.update(attrs)
    for p in run.server_points:
        if p.name.startswith("mcp."):
            names.add(p.name)
            names.update(p.attributes)
    assert_documented(names)


# --------------------------------------------------------------------------- in-process tests


async def _in_process_call(calls: int = 1, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Client and server in this process over memory streams (no transport-specific code)."""
    import anyio
    from mcp import ClientSession

    from tests.support.mcp_server import build_server

    server = build_server()
    lowlevel = getattr(server, "_lowlevel_server", None) or server._mcp_server
    c2s_send, c2s_recv = anyio.create_memory_object_stream[Any](16)
    s2c_send, s2c_recv = anyio.create_memory_object_stream[Any](16)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lowlevel.run, c2s_recv, s2c_send, lowlevel.create_initialization_options())
        async with ClientSession(s2c_recv, c2s_send) as session:
            await session.initialize()
            for _ in range(calls):
                await session.call_tool("convert", {"text": "x"})
            received = {}
            if meta is not None:
                result = await _call_with_meta(session, "echo_meta", meta)
                received = json.loads(result.content[0].text)
        tg.cancel_scope.cancel()
    return received


async def _call_with_meta(session: Any, tool: str, meta: dict[str, Any]) -> Any:
    """``call_tool`` with caller-supplied ``_meta`` (mcp < 1.24 has no ``meta=`` argument)."""
    if "meta" in inspect.signature(session.call_tool).parameters:
        return await session.call_tool(tool, {}, meta=meta)
    from mcp import types

    request = types.ClientRequest(
        types.CallToolRequest(
            method="tools/call",
            params=types.CallToolRequestParams(name=tool, arguments={}, _meta=meta),
        )
    )
    return await session.send_request(request, types.CallToolResult)


def _tool_spans(spans: list[ReadableSpan]) -> Counter[tuple[str, SpanKind]]:
    return Counter(
        (s.name, s.kind) for s in spans if "convert" in s.name and s.name != "convert.work"
    )


def test_spans_go_through_the_given_provider_and_instrument_is_idempotent() -> None:
    """Spans use the providers given to instrument() (not the global one); instrumenting twice changes nothing."""
    t = _providers()
    try:
        assert mcp_integration.instrument(_ctx(t)) is None
        assert mcp_integration.instrument(_ctx(t)) is None
        asyncio.run(_in_process_call(calls=2))
    finally:
        mcp_integration.uninstrument()
    counts = _tool_spans(t.spans())
    assert counts == {
        (_client_span_name("tools/call", "convert"), SpanKind.CLIENT): 2,
        ("tools/call convert", SpanKind.SERVER): 2,
    }
    client = [s for s in t.spans() if s.kind is SpanKind.CLIENT and "convert" in s.name]
    server = [s for s in t.spans() if s.kind is SpanKind.SERVER and "convert" in s.name]
    assert {s.parent.span_id for s in server if s.parent} == {s.context.span_id for s in client}
    durations = [
        p
        for n, a, p in t.points()
        if n == "mcp.client.operation.duration" and a.get("gen_ai.tool.name")
    ]
    assert [p.count for p in durations] == [2]


def test_uninstrument_restores_the_library() -> None:
    """After uninstrument() no span or metric is recorded through the providers that were given."""
    t = _providers()
    assert mcp_integration.instrument(_ctx(t)) is None
    mcp_integration.uninstrument()
    mcp_integration.uninstrument()  # twice is harmless
    asyncio.run(_in_process_call())
    assert t.spans() == []
    assert t.points() == []


@pytest.mark.parametrize("fake", [(1, 8, "1.8.1"), (3, 0, "3.0.0"), (0, 9, "0.9.1")])
def test_unsupported_version_is_declined(
    monkeypatch: pytest.MonkeyPatch, fake: tuple[int, int, str]
) -> None:
    """An mcp outside 1.x (>= 1.9) and 2.x is not patched; instrument() returns the reason instead."""
    monkeypatch.setattr(mcp_integration, "_installed_version", lambda: fake)
    t = _providers()
    reason = mcp_integration.instrument(_ctx(t))
    try:
        assert reason is not None and fake[2] in reason and "not supported" in reason
        asyncio.run(_in_process_call())
        assert not [s for s in t.spans() if s.kind is SpanKind.CLIENT]
    finally:
        mcp_integration.uninstrument()


def test_importing_platform_otel_does_not_import_mcp() -> None:
    """Importing the package and the MCP integration module imports nothing from mcp."""
    code = (
        "import sys, platform_otel, platform_otel.instrumentation.mcp\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("upstream", [False, True])
def test_existing_meta_is_kept_and_context_injected_once(upstream: bool) -> None:
    """Caller-supplied _meta keys survive; a traceparent already in _meta is never overwritten or doubled."""
    if upstream and MCP_MAJOR >= 2:
        pytest.skip(
            "mcp 2.x injects _meta itself (its own behaviour; platform-otel does not inject on 2.x)"
        )
    foreign_trace, foreign_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    meta: dict[str, Any] = {"tenant": "t-1"}
    if upstream:
        meta["traceparent"] = f"00-{foreign_trace}-{foreign_span}-01"
    t = _providers()
    try:
        assert mcp_integration.instrument(_ctx(t)) is None
        received = asyncio.run(_in_process_call(calls=0, meta=meta))
    finally:
        mcp_integration.uninstrument()
    (client,) = [s for s in t.spans() if s.kind is SpanKind.CLIENT and "echo_meta" in s.name]
    (server,) = [s for s in t.spans() if s.kind is SpanKind.SERVER and "echo_meta" in s.name]
    assert received["tenant"] == "t-1"
    assert server.parent is not None
    if upstream:
        assert received["traceparent"] == meta["traceparent"]
        assert (_hex(server.context.trace_id, 32), _hex(server.parent.span_id, 16)) == (
            foreign_trace,
            foreign_span,
        )
    else:
        ours = f"00-{_hex(client.context.trace_id, 32)}-{_hex(client.context.span_id, 16)}-"
        assert received["traceparent"].startswith(ours)
        assert server.parent.span_id == client.context.span_id
