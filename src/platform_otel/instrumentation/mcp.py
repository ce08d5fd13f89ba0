"""MCP (Model Context Protocol) integration for the ``mcp`` Python SDK, 1.x (>= 1.9) and 2.x.

Why two code paths:

* **mcp 2.x traces itself**: ``mcp.shared._otel`` creates a CLIENT span for every
  request the JSON-RPC dispatcher sends (and injects W3C context into
  ``params._meta``), and the server's ``OpenTelemetryMiddleware`` creates the
  SERVER span parented on it. Wrapping 2.x at the wire level again would give
  every call two spans and two injections. On 2.x we only point the SDK's
  tracer at *our* tracer provider (it otherwise uses the global one) and add
  the semantic-convention metrics the SDK lacks.
* **mcp 1.x has no telemetry**: we create the CLIENT span around
  ``BaseSession.send_request`` (client sessions only), inject the context into
  ``params._meta`` once (never when a ``traceparent`` is already there), and
  create the SERVER span around ``Server._handle_request``, parented on the
  extracted context and current while the handler runs, so the handler's own
  spans and logs are its children.

Nothing here imports ``mcp`` at module import time: 1.x and 2.x have different
internals (``mcp.shared.session`` does not exist on 2.x), so each path imports
what it patches inside :func:`instrument`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import importlib.util
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._safety import report_internal_error

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from opentelemetry.trace import Span, Tracer

    from . import InstrumentationContext

__all__ = ["LIBRARY", "instrument", "uninstrument"]

LIBRARY = "mcp"

# Semantic-convention names, pinned here (documented in docs/telemetry.md, "MCP").
CLIENT_OPERATION_DURATION = "mcp.client.operation.duration"
SERVER_OPERATION_DURATION = "mcp.server.operation.duration"
CLIENT_SESSION_DURATION = "mcp.client.session.duration"
SERVER_SESSION_DURATION = "mcp.server.session.duration"
_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_METHOD = "mcp.method.name"
_SESSION_ID = "mcp.session.id"
_PROTOCOL = "mcp.protocol.version"
_REQUEST_ID = "jsonrpc.request.id"
_STATUS_CODE = "rpc.response.status_code"
_TRANSPORT = "network.transport"
_OPERATION = "gen_ai.operation.name"
_TOOL = "gen_ai.tool.name"
_PROMPT = "gen_ai.prompt.name"
_ERROR = "error.type"

# Attributes allowed on metrics: all of bounded cardinality (no ids, no URIs).
_METRIC_KEYS = (_METHOD, _TOOL, _PROMPT, _OPERATION, _PROTOCOL, _TRANSPORT, _ERROR, _STATUS_CODE)

_MISSING = object()
_START_ATTR = "_platform_otel_mcp_started"
_PROTOCOL_ATTR = "_platform_otel_mcp_protocol"


@dataclass
class _State:
    major: int
    tracer: Tracer
    client_duration: Histogram
    server_duration: Histogram
    client_session: Histogram
    server_session: Histogram
    # (owner, attribute, original value or _MISSING), undone in reverse order
    patches: list[tuple[Any, str, Any]] = field(default_factory=list)
    classes: dict[str, type] = field(default_factory=dict)


_state: _State | None = None

# 1.x: the response ``Server._handle_request`` sends, captured by the
# ``RequestResponder.respond`` wrapper for the server span in progress.
_server_call: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "platform_otel_mcp_server_call", default=None
)


# --------------------------------------------------------------------------- contract


def instrument(ctx: InstrumentationContext) -> str | None:
    """Instrument the installed ``mcp``; return a reason string when its version is unsupported."""
    global _state
    if _state is not None:
        return None
    version = _installed_version()
    if version is None:
        return "mcp is not installed"
    major, minor, text = version
    if not ((major == 1 and minor >= 9) or major == 2):
        return f"mcp {text} is not supported (supported: 1.x from 1.9, and 2.x)"
    if major == 2 and importlib.util.find_spec("mcp.shared._otel") is None:
        return f"mcp {text} lacks mcp.shared._otel (native tracing); not supported"

    meter = ctx.meter_provider.get_meter("platform_otel.mcp", __version__)

    def histogram(name: str, description: str) -> Histogram:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=list(_BUCKETS),
        )

    scope = "mcp-python-sdk" if major == 2 else "platform_otel.mcp"
    state = _State(
        major=major,
        tracer=ctx.tracer_provider.get_tracer(scope, text if major == 2 else __version__),
        client_duration=histogram(
            CLIENT_OPERATION_DURATION, "Duration of an MCP request as seen by the client."
        ),
        server_duration=histogram(
            SERVER_OPERATION_DURATION, "Duration of an MCP request as handled by the server."
        ),
        client_session=histogram(CLIENT_SESSION_DURATION, "Lifetime of an MCP client session."),
        server_session=histogram(SERVER_SESSION_DURATION, "Lifetime of an MCP server session."),
    )
    try:
        if major == 1:
            _instrument_v1(state)
        else:
            _instrument_v2(state)
    except Exception:
        _undo(state)
        raise
    _state = state
    return None


def uninstrument() -> None:
    """Restore every patched attribute; safe to call when not instrumented."""
    global _state
    state, _state = _state, None
    if state is not None:
        _undo(state)


# --------------------------------------------------------------------------- helpers


def _installed_version() -> tuple[int, int, str] | None:
    try:
        text = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return None
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        return (0, 0, text)
    return (int(match.group(1)), int(match.group(2)), text)


def _patch(state: _State, module_name: str, path: str, wrapper: Callable[..., Any]) -> None:
    """Wrap ``module.path`` (``"Class.method"``) with wrapt and remember how to undo it."""
    import wrapt

    module = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    owner: Any = module
    for name in parents:
        owner = getattr(owner, name)
    # Keep the raw class-dict entry (a classmethod stays a classmethod on restore).
    original = vars(owner).get(attr, _MISSING) if isinstance(owner, type) else getattr(owner, attr)
    wrapt.wrap_function_wrapper(owner, attr, wrapper)
    state.patches.append((owner, attr, original))


def _set_attr(state: _State, module_name: str, attr: str, value: Any) -> None:
    module = importlib.import_module(module_name)
    state.patches.append((module, attr, getattr(module, attr, _MISSING)))
    setattr(module, attr, value)


def _undo(state: _State) -> None:
    while state.patches:
        owner, attr, original = state.patches.pop()
        if original is _MISSING:
            with contextlib.suppress(AttributeError):
                delattr(owner, attr)
        else:
            setattr(owner, attr, original)


def _split_request(request: Any) -> tuple[str | None, str | None, Any]:
    """(method, tool/prompt name, params) of a request model, unwrapping RootModel unions."""
    root = getattr(request, "root", request)
    method = getattr(root, "method", None)
    params = getattr(root, "params", None)
    target = getattr(params, "name", None) if params is not None else None
    return (
        method if isinstance(method, str) else None,
        target if isinstance(target, str) else None,
        params,
    )


def _base_attributes(method: str | None, target: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if method:
        attrs[_METHOD] = method
    if method == "tools/call":
        attrs[_OPERATION] = "execute_tool"
        if target:
            attrs[_TOOL] = target
    elif method == "prompts/get" and target:
        attrs[_PROMPT] = target
    return attrs


def _span_name(method: str | None, target: str | None) -> str:
    name = method or "mcp"
    return f"{name} {target}" if target and method in ("tools/call", "prompts/get") else name


def _metric_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: attrs[k] for k in _METRIC_KEYS if attrs.get(k) is not None}


def _error_attributes(exc: BaseException) -> dict[str, str]:
    """``error.type`` (and the JSON-RPC code) for an exception raised by a request."""
    error = getattr(exc, "error", None)  # McpError / MCPError carry ErrorData
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return {_ERROR: str(code), _STATUS_CODE: str(code)}
    return {_ERROR: type(exc).__qualname__}


def _is_tool_error(result: Any) -> bool:
    root = getattr(result, "root", result)
    if isinstance(root, Mapping):
        return root.get("isError") is True
    return getattr(root, "isError", None) is True or getattr(root, "is_error", None) is True


def _finish_span(span: Span, attrs: Mapping[str, Any], error: BaseException | None) -> None:
    from opentelemetry.trace import StatusCode

    span.set_attributes(dict(attrs))
    if error is not None and not _is_cancellation(error):
        span.record_exception(error)
    if _ERROR in attrs:
        span.set_status(StatusCode.ERROR, str(error) if error is not None else None)
    span.end()


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "Cancelled"


def _v2_transport(dctx: Any) -> str:
    """``tcp`` for HTTP-borne requests (the transport attaches the HTTP request), else ``pipe``."""
    kind = getattr(getattr(dctx, "transport", None), "kind", None)
    if kind in ("streamable-http", "sse"):
        return "tcp"
    metadata = getattr(dctx, "message_metadata", None)
    return "tcp" if getattr(metadata, "request_context", None) is not None else "pipe"


# --------------------------------------------------------------------------- mcp 1.x


def _instrument_v1(state: _State) -> None:
    from mcp.client.session import ClientSession
    from mcp.server.session import ServerSession

    state.classes = {"client": ClientSession, "server": ServerSession}
    _patch(state, "mcp.shared.session", "BaseSession.send_request", _v1_send_request)
    _patch(state, "mcp.shared.session", "BaseSession.__aenter__", _v1_session_enter)
    _patch(state, "mcp.shared.session", "BaseSession.__aexit__", _v1_session_exit)
    _patch(state, "mcp.shared.session", "RequestResponder.respond", _v1_respond)
    _patch(state, "mcp.server.lowlevel.server", "Server._handle_request", _v1_handle_request)


def _v1_inject(request: Any, context: Any) -> Any:
    """Return a copy of ``request`` whose ``params._meta`` carries the W3C context (once)."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    if not carrier:
        return request
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    params = data.setdefault("params", {})
    meta = params.get("_meta") or {}
    if "traceparent" in meta:  # someone upstream already propagated: never inject twice
        return request
    params["_meta"] = {**meta, **carrier}
    return type(request).model_validate(data)


async def _v1_send_request(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = _state
    if state is None or not isinstance(instance, state.classes["client"]):
        return await wrapped(*args, **kwargs)
    started = time.perf_counter()
    try:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        request = args[0] if args else kwargs["request"]
        method, target, _ = _split_request(request)
        attrs = _base_attributes(method, target)
        request_id = getattr(instance, "_request_id", None)
        if request_id is not None:
            attrs[_REQUEST_ID] = str(request_id)
        protocol = getattr(instance, _PROTOCOL_ATTR, None)
        if protocol:
            attrs[_PROTOCOL] = protocol
        span = state.tracer.start_span(
            _span_name(method, target), kind=SpanKind.CLIENT, attributes=attrs
        )
        new_request = _v1_inject(request, trace.set_span_in_context(span))
        if args:
            args = (new_request, *args[1:])
        else:
            kwargs = {**kwargs, "request": new_request}
    except Exception:
        report_internal_error("mcp client request")
        return await wrapped(*args, **kwargs)

    error: BaseException | None = None
    result: Any = None
    try:
        result = await wrapped(*args, **kwargs)
        return result
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            if error is not None:
                attrs.update(_error_attributes(error))
            elif method == "tools/call" and _is_tool_error(result):
                attrs[_ERROR] = "tool_error"
            elif method == "initialize":
                version = getattr(getattr(result, "root", result), "protocolVersion", None)
                if isinstance(version, str):
                    setattr(instance, _PROTOCOL_ATTR, version)
                    attrs[_PROTOCOL] = version
            _finish_span(span, attrs, error)
            state.client_duration.record(time.perf_counter() - started, _metric_attributes(attrs))
        except Exception:
            report_internal_error("mcp client request")


def _v1_session_role(state: _State, instance: Any) -> str | None:
    if isinstance(instance, state.classes["client"]):
        return "client"
    if isinstance(instance, state.classes["server"]):
        return "server"
    return None


async def _v1_session_enter(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = await wrapped(*args, **kwargs)
    if _state is not None:
        try:
            setattr(instance, _START_ATTR, time.perf_counter())
        except Exception:
            report_internal_error("mcp session start")
    return result


async def _v1_session_exit(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        state = _state
        started = getattr(instance, _START_ATTR, None)
        if state is not None and started is not None:
            try:
                delattr(instance, _START_ATTR)
                role = _v1_session_role(state, instance)
                attrs: dict[str, Any] = {}
                exc_type = args[0] if args else kwargs.get("exc_type")
                if exc_type is not None and not issubclass(exc_type, GeneratorExit):
                    attrs[_ERROR] = exc_type.__qualname__
                if role == "client":
                    protocol = getattr(instance, _PROTOCOL_ATTR, None)
                    histogram = state.client_session
                else:
                    protocol = _v1_server_protocol(instance, None)
                    histogram = state.server_session
                if protocol:
                    attrs[_PROTOCOL] = protocol
                if role is not None:
                    histogram.record(time.perf_counter() - started, attrs)
            except Exception:
                report_internal_error("mcp session end")


def _v1_server_protocol(session: Any, req: Any) -> str | None:
    params = getattr(session, "client_params", None)
    if params is None and getattr(req, "method", None) == "initialize":
        params = getattr(req, "params", None)
    version = getattr(params, "protocolVersion", None)
    return version if isinstance(version, str) else None


def _v1_carrier(message: Any) -> dict[str, Any]:
    meta = getattr(message, "request_meta", None)
    if meta is None:
        return {}
    dumped = meta.model_dump(by_alias=True) if hasattr(meta, "model_dump") else dict(meta)
    return {k: v for k, v in dumped.items() if isinstance(v, str)}


def _v1_http_request(message: Any) -> Any:
    metadata = getattr(message, "message_metadata", None)
    return getattr(metadata, "request_context", None)


async def _v1_handle_request(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = _state
    if state is None:
        return await wrapped(*args, **kwargs)
    started = time.perf_counter()
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind

        message = args[0] if args else kwargs["message"]
        req = args[1] if len(args) > 1 else kwargs["req"]
        session = args[2] if len(args) > 2 else kwargs.get("session")
        method, target, _ = _split_request(req)
        attrs = _base_attributes(method, target)
        request_id = getattr(message, "request_id", None)
        if request_id is not None:
            attrs[_REQUEST_ID] = str(request_id)
        protocol = _v1_server_protocol(session, req)
        if protocol:
            attrs[_PROTOCOL] = protocol
        http_request = _v1_http_request(message)
        # Streamable HTTP (and SSE) attach the Starlette request; stdio attaches nothing.
        attrs[_TRANSPORT] = "tcp" if http_request is not None else "pipe"
        headers = getattr(http_request, "headers", None)
        session_id = headers.get("mcp-session-id") if headers is not None else None
        if session_id:
            attrs[_SESSION_ID] = session_id
        extracted = propagate.extract(_v1_carrier(message))
        # No remote parent: nest under whatever is current instead of starting an orphan.
        parent = (
            extracted if trace.get_current_span(extracted).get_span_context().is_valid else None
        )
        span = state.tracer.start_span(
            _span_name(method, target), context=parent, kind=SpanKind.SERVER, attributes=attrs
        )
        call: dict[str, Any] = {}
    except Exception:
        report_internal_error("mcp server request")
        return await wrapped(*args, **kwargs)

    from opentelemetry import trace

    error: BaseException | None = None
    token = _server_call.set(call)
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            return await wrapped(*args, **kwargs)
    except BaseException as exc:
        error = exc
        raise
    finally:
        _server_call.reset(token)
        try:
            if error is not None:
                attrs.update(_error_attributes(error))
            else:
                response = call.get("response")
                code = getattr(response, "code", None)
                if isinstance(code, int) and hasattr(response, "message"):  # ErrorData
                    attrs.update({_ERROR: str(code), _STATUS_CODE: str(code)})
                elif method == "tools/call" and _is_tool_error(response):
                    attrs[_ERROR] = "tool_error"
            _finish_span(span, attrs, error)
            state.server_duration.record(time.perf_counter() - started, _metric_attributes(attrs))
        except Exception:
            report_internal_error("mcp server request")


async def _v1_respond(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    call = _server_call.get()
    if call is not None:
        call["response"] = args[0] if args else kwargs.get("response")
    return await wrapped(*args, **kwargs)


# --------------------------------------------------------------------------- mcp 2.x


def _instrument_v2(state: _State) -> None:
    # The SDK's spans: same tracer name, but from our provider instead of the global one.
    _set_attr(state, "mcp.shared._otel", "_tracer", state.tracer)
    _patch(state, "mcp.client.session", "ClientSession.send_request", _v2_send_request)
    _patch(state, "mcp.client.session", "ClientSession.__aenter__", _v2_client_enter)
    _patch(state, "mcp.client.session", "ClientSession.__aexit__", _v2_client_exit)
    _patch(state, "mcp.server.runner", "ServerRunner._on_request", _v2_on_request)
    _patch(state, "mcp.server.connection", "Connection.for_loop", _v2_connection_for_loop)


async def _v2_send_request(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = _state
    if state is None:
        return await wrapped(*args, **kwargs)
    started = time.perf_counter()
    error: BaseException | None = None
    result: Any = None
    try:
        result = await wrapped(*args, **kwargs)
        return result
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            request = args[0] if args else kwargs.get("request")
            method, target, _ = _split_request(request)
            attrs = _base_attributes(method, target)
            protocol = getattr(instance, "protocol_version", None)
            if isinstance(protocol, str):
                attrs[_PROTOCOL] = protocol
            if error is not None:
                attrs.update(_error_attributes(error))
            elif method == "tools/call" and _is_tool_error(result):
                attrs[_ERROR] = "tool_error"
            state.client_duration.record(time.perf_counter() - started, _metric_attributes(attrs))
        except Exception:
            report_internal_error("mcp client request")


_v2_client_enter = _v1_session_enter  # same job on 2.x: stamp the session start


async def _v2_client_exit(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        state = _state
        started = getattr(instance, _START_ATTR, None)
        if state is not None and started is not None:
            try:
                delattr(instance, _START_ATTR)
                attrs: dict[str, Any] = {}
                protocol = getattr(instance, "protocol_version", None)
                if isinstance(protocol, str):
                    attrs[_PROTOCOL] = protocol
                exc_type = args[0] if args else kwargs.get("exc_type")
                if exc_type is not None:
                    attrs[_ERROR] = exc_type.__qualname__
                state.client_session.record(time.perf_counter() - started, attrs)
            except Exception:
                report_internal_error("mcp session end")


async def _v2_on_request(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = _state
    if state is None:
        return await wrapped(*args, **kwargs)
    started = time.perf_counter()
    error: BaseException | None = None
    result: Any = None
    try:
        result = await wrapped(*args, **kwargs)
        return result
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            dctx = args[0] if args else kwargs.get("dctx")
            method = args[1] if len(args) > 1 else kwargs.get("method")
            params = args[2] if len(args) > 2 else kwargs.get("params")
            name = params.get("name") if isinstance(params, Mapping) else None
            attrs = _base_attributes(method, name if isinstance(name, str) else None)
            protocol = getattr(getattr(instance, "connection", None), "protocol_version", None)
            if isinstance(protocol, str):
                attrs[_PROTOCOL] = protocol
            attrs[_TRANSPORT] = _v2_transport(dctx)
            if error is not None:
                attrs.update(_error_attributes(error))
            elif method == "tools/call" and _is_tool_error(result):
                attrs[_ERROR] = "tool_error"
            state.server_duration.record(time.perf_counter() - started, _metric_attributes(attrs))
        except Exception:
            report_internal_error("mcp server request")


def _v2_connection_for_loop(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    connection = wrapped(*args, **kwargs)
    state = _state
    if state is not None:
        try:
            started = time.perf_counter()

            def record() -> None:
                try:
                    attrs: dict[str, Any] = {}
                    if isinstance(getattr(connection, "protocol_version", None), str):
                        attrs[_PROTOCOL] = connection.protocol_version
                    state.server_session.record(time.perf_counter() - started, attrs)
                except Exception:
                    report_internal_error("mcp session end")

            connection.exit_stack.callback(record)
        except Exception:
            report_internal_error("mcp session start")
    return connection
