"""Lean ASGI server telemetry: one SERVER span and one histogram point per HTTP request.

Why not the official ``opentelemetry-instrumentation-asgi`` middleware: it wraps
``receive`` and ``send`` in spans of their own (three spans per request), rebuilds
attribute dictionaries several times per request and halves a hello-world app's
throughput. This module emits the same HTTP server semantic conventions with
the work per request reduced to what the telemetry needs:

* W3C (or any configured) propagation headers are read in the single pass over
  ``scope["headers"]`` that also finds ``host`` and ``user-agent``; the global
  propagator is only called when one of its ``fields`` is present;
* the span is started with ``Tracer.start_span`` and attached to the context
  directly (no ``start_as_current_span`` context-manager machinery; the
  ``ContextVar`` itself where the API's default runtime context is in use,
  ``platform_otel._context``);
* ``server.address``/``server.port`` are parsed once per distinct Host value,
  histogram attribute dicts are built once per (method, route, status, scheme,
  error) combination;
* the span stays current, and not yet ended, while the application runs *and*
  while the server's ``send`` runs, so uvicorn's access-log line (written from
  inside ``send`` of ``http.response.start``) is correlated with the request;
* except in uvicorn's ``send`` of the *last* body chunk: there uvicorn schedules
  the connection's keep-alive timer, and a timer keeps a copy of the current
  context. With the span current, every request's span, attributes and context
  stayed alive in cancelled timers after the request, which made the garbage
  collector run about 50 times more often than without telemetry and promoted
  those objects into full collections (~30 ms pauses, several µs per request).
  That one call runs in the context the request started in (uvicorn writes no
  log line there); other servers, which may log there (hypercorn's access line),
  keep the span current.

The route template (``http.route``) comes from the Starlette/FastAPI route the
router stored in ``scope["route"]``; it is read after the application ran, so no
route matching is repeated. Raw paths never reach metric attributes.

Nothing here may break a request: everything except the application call is
guarded (``platform_otel._safety``).

Per request: ``exchange = telemetry.begin(scope, send)`` starts the span and
returns the ``send`` the application gets (:class:`_Exchange`: it notes the
status and times the last body chunk); ``telemetry.end(exchange, exc)`` finishes
the span and records the duration. :meth:`ServerTelemetry.handle` is the two
around an application call; the FastAPI hook inlines them (one coroutine frame
less for every suspension of the request).

Where the optional C extension ``platform_otel._asgi_speedups`` was built,
``begin`` and ``end`` are its ``RequestPath``'s: it does the work of
:meth:`ServerTelemetry._start` and :meth:`ServerTelemetry._finish` for the common
request (a known method, the default sampler, no 5xx or exception, no mount) and
calls those methods for every other one. The Python methods are the reference:
a test runs the same requests through both and compares spans, queue items and
histogram points.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)

from .._context import SPAN_KEY, current_var, span_context_with
from .._lean_metrics import LeanHistogram
from .._lean_trace import _FLAGS, LeanSpan, lean_tracer
from .._safety import report_internal_error
from .logging import EXCEPTION_SPAN_ATTR

__all__ = [
    "DURATION_BUCKETS",
    "SCOPE_KEY",
    "LeanASGIMiddleware",
    "ServerTelemetry",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Semantic-convention names (docs/telemetry.md, section "HTTP server").
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL = "http.request.method_original"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_SCHEME = "url.scheme"
URL_PATH = "url.path"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
USER_AGENT_ORIGINAL = "user_agent.original"
CLIENT_ADDRESS = "client.address"
ERROR_TYPE = "error.type"
DURATION_METRIC = "http.server.request.duration"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: Key set in the ASGI scope by the outermost traced layer: nested (mounted)
#: apps see it and do not start a second server span for the same request.
SCOPE_KEY = "platform_otel.server_span"

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_DURATION_DESCRIPTION = "Duration of HTTP server requests."
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ROOT_CONTEXT = Context()  # server spans take their parent from headers only
_CACHE_LIMIT = 1024  # bound every per-value cache (hostile Host headers, odd routes)


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _parse_host(host: str, scheme: str) -> tuple[str | None, int | None]:
    """Split a Host header into (address, port); the scheme's default port if absent."""
    port: int | None = None
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        address = host[1:end] if end > 0 else host
        rest = host[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    else:
        address, sep, port_text = host.rpartition(":")
        if not sep:
            address = host
        elif port_text.isdigit():
            port = int(port_text)
        else:
            address = host
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return (address or None), port


_Started = tuple[
    Any, "Token[Context]", float, str, str, str, Context
]  # span, token, t0, method, name, scheme, the context before the request's


class _Carrier(dict[str, list[str]]):
    """Propagation headers of one request, in the shape ``DefaultGetter`` reads."""


class ServerTelemetry:
    """Per-process state of the lean HTTP server instrumentation (tracer, histogram, caches).

    ``speedups=False`` keeps the per-request work in Python even where the C extension
    was built (``PLATFORM_OTEL_OTLP_ENCODER=python``).
    """

    def __init__(self, tracer: Tracer, meter: Meter, *, speedups: bool = True) -> None:
        self.tracer = tracer
        # SDK-compatible spans at a fraction of the SDK span's cost (_lean_trace); None
        # with a tracer it cannot mirror, and then the tracer itself is used.
        self._lean = lean_tracer(tracer)
        # Pre-aggregated in place and merged into the SDK's collections (_lean_metrics);
        # the SDK instrument where that would not be equivalent (views, delta readers).
        self._lean_duration = LeanHistogram.create(
            meter, DURATION_METRIC, "s", _DURATION_DESCRIPTION, DURATION_BUCKETS
        )
        self.duration: Histogram | None = None
        if self._lean_duration is None:
            self.duration = meter.create_histogram(
                DURATION_METRIC,
                unit="s",
                description=_DURATION_DESCRIPTION,
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            )
        self._hosts: dict[tuple[bytes, str], tuple[str | None, int | None]] = {}
        self._servers: dict[Any, tuple[str | None, int | None]] = {}
        self._metric_attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._isolating: dict[type, bool] = {}
        # The runtime context's ContextVar (None with a custom runtime context: the API then).
        self._var = current_var()
        self._textmap: Any = None
        self._fields: frozenset[bytes] = frozenset()
        # begin(scope, send) -> exchange, the send the app gets; end(exchange, exc): the
        # request's start and finish (what handle() does around the app), in C where the
        # extension was built.
        self.begin: Callable[[Scope, Send], Send] = self._begin_py
        self.end: Callable[[Any, BaseException | None], None] = self._end_py
        self.c_path: Any = self._c_request_path() if speedups else None
        if self.c_path is not None:
            self.begin = self.c_path.begin
            self.end = self.c_path.end

    # -- helpers (all called under a guard) ---------------------------------

    def _propagation_fields(self) -> frozenset[bytes]:
        """Header names the global propagator reads (re-read when it is replaced)."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            try:
                fields = frozenset(f.lower().encode("latin-1") for f in textmap.fields)
            except Exception:  # a propagator without usable `fields`: always extract
                fields = frozenset()
            self._fields = fields
            self._textmap = textmap
        return self._fields

    def _extract(self, items: list[tuple[bytes, bytes]]) -> tuple[Context, SpanContext | None]:
        """(context, its span's SpanContext or None) from a request's propagation headers."""
        carrier = _Carrier()
        for name, value in items:
            carrier.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        context = propagate.extract(carrier, context=_ROOT_CONTEXT)
        return context, (trace.get_current_span(context).get_span_context() if context else None)

    def _c_request_path(self) -> Any:
        """``_asgi_speedups.RequestPath`` for this telemetry; None where it is not built or
        would not be equivalent (no lean tracer, a custom runtime context or sampler, ids
        not from ``random``, a span attribute length limit)."""
        lean = self._lean
        if (
            lean is None
            or self._var is None
            or not lean._default_sampler
            or not lean._random_ids
            or lean.max_attribute_length is not None
        ):
            return None
        try:
            from .. import _asgi_speedups
        except ImportError:
            return None
        hist = self._lean_duration
        return _asgi_speedups.RequestPath(
            py_start=self._start,
            py_finish=self._finish,
            server=self._server,
            refresh_fields=self._propagation_fields,
            extract=self._extract,
            span_name=self._span_name,
            metric_attributes=self._metric_attributes,
            set_span_in_context=trace.set_span_in_context,
            hosts=self._hosts,
            names=self._names,
            metric_attrs=self._metric_attrs,
            lean=lean,
            sdk_tracer=lean.sdk_tracer,
            processor=lean.processor,
            direct_for=lean.direct_for,
            scope=lean.scope,
            var=self._var,
            otlp=lean.otlp,
            status_unset=lean.status_unset,
            span_context_type=SpanContext,
            lean_span_type=LeanSpan,
            context_type=Context,
            root_context=_ROOT_CONTEXT,
            span_key=SPAN_KEY,
            default_trace_state=DEFAULT_TRACE_STATE,
            flags_random=_FLAGS[True, True],  # sampled, with a random trace id
            flags_parent=_FLAGS[True, False],  # sampled, the parent's id not random
            kind_server=SpanKind.SERVER,
            kind_value=SpanKind.SERVER.value,
            known_methods=_KNOWN_METHODS,
            propagate_dict=vars(propagate),
            textmap=None,
            fields=frozenset(),
            getrandbits=random.getrandbits,
            time_ns=time.time_ns,
            perf_counter=time.perf_counter,
            bits64=64,
            bits128=128,
            hist=hist,
            duration=self.duration,
            py_begin=self._begin_py,
            py_end=self._end_py,
            final_send=self._final_send,
            isolates=self._isolates_final_send,
            isolating=self._isolating,
            scope_key=SCOPE_KEY,
            max_attributes=lean.max_attributes,
            bounds=hist._bounds if hist is not None else (),
            always_exemplar=hist is not None and hist._always_exemplar,
            trace_exemplar=hist is not None and hist._trace_exemplar,
        )

    def _server(
        self, host: bytes | None, scope: Scope, scheme: str
    ) -> tuple[str | None, int | None]:
        if host is not None:
            key = (host, scheme)
            hit = self._hosts.get(key)
            if hit is None:
                hit = _parse_host(host.decode("latin-1"), scheme)
                if len(self._hosts) < _CACHE_LIMIT:
                    self._hosts[key] = hit
            return hit
        server = scope.get("server")
        hit = self._servers.get(server)
        if hit is None:
            hit = (server[0], server[1]) if server else (None, None)
            if len(self._servers) < _CACHE_LIMIT:
                self._servers[server] = hit
        return hit

    def _metric_attributes(
        self, key: tuple[str, str | None, int, str, str | None]
    ) -> dict[str, Any]:
        """Histogram attributes for (method, route, status, scheme, error), built once."""
        attrs = self._metric_attrs.get(key)
        if attrs is None:
            method, route, status, scheme, error = key
            attrs = {HTTP_REQUEST_METHOD: method, URL_SCHEME: scheme}
            if route is not None:
                attrs[HTTP_ROUTE] = route
            if status:
                attrs[HTTP_RESPONSE_STATUS_CODE] = status
            if error is not None:
                attrs[ERROR_TYPE] = error
            if len(self._metric_attrs) < _CACHE_LIMIT:
                self._metric_attrs[key] = attrs
        return attrs

    def _span_name(self, method: str, route: str) -> str:
        """``"{method} {route}"``, built once per pair."""
        key = (method, route)
        name = self._names.get(key)
        if name is None:
            name = f"{method} {route}"
            if len(self._names) < _CACHE_LIMIT:
                self._names[key] = name
        return name

    def _isolates_final_send(self, send: Send) -> bool:
        """Whether ``send`` is uvicorn's, whose last-chunk call only schedules server bookkeeping
        (the keep-alive timer that would keep the request's context alive; see module doc)."""
        owner = getattr(send, "__self__", None)
        if owner is None or self._var is None:
            return False
        cls = type(owner)
        hit = self._isolating.get(cls)
        if hit is None:
            module = getattr(cls, "__module__", None)
            hit = isinstance(module, str) and module.startswith("uvicorn.")
            if len(self._isolating) < _CACHE_LIMIT:
                self._isolating[cls] = hit
        return hit

    # -- request lifecycle ----------------------------------------------------

    def _start(self, scope: Scope) -> _Started:
        """Start and attach the server span; returns what ``_finish`` needs."""
        raw_method = scope.get("method") or ""
        method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        scheme = scope.get("scheme") or "http"
        fields = self._propagation_fields()
        host = user_agent = None
        items: list[tuple[bytes, bytes]] | None = None
        for row in scope.get("headers") or ():
            name, value = row
            if name == b"host":
                host = value
            elif name == b"user-agent":
                user_agent = value
            elif name in fields or not fields:
                if items is None:
                    items = []
                items.append(row)
        parent = _ROOT_CONTEXT if items is None else self._extract(items)[0]
        address, port = self._server(host, scope, scheme)
        attributes: dict[str, Any] = {
            HTTP_REQUEST_METHOD: method,
            URL_SCHEME: scheme,
            URL_PATH: scope.get("path") or "/",
        }
        if method == "_OTHER":
            attributes[HTTP_REQUEST_METHOD_ORIGINAL] = raw_method
        if address:
            attributes[SERVER_ADDRESS] = address
            if port is not None:
                attributes[SERVER_PORT] = port
        version = scope.get("http_version")
        if version:
            attributes[NETWORK_PROTOCOL_VERSION] = version
        if user_agent is not None:
            attributes[USER_AGENT_ORIGINAL] = user_agent.decode("latin-1")
        client = scope.get("client")
        if client and client[0]:
            attributes[CLIENT_ADDRESS] = client[0]
        span_method = "HTTP" if method == "_OTHER" else method
        lean = self._lean
        if lean is not None:
            span = lean.start_span(span_method, parent, SpanKind.SERVER, attributes)
        else:
            span = self.tracer.start_span(
                span_method, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
        context = span_context_with(span, parent)
        var = self._var
        if var is not None:
            outer = var.get()
            token = var.set(context)
        else:
            outer = otel_context.get_current()
            token = otel_context.attach(context)
        return span, token, time.perf_counter(), method, span_method, scheme, outer

    def _finish(
        self,
        scope: Scope,
        started: _Started,
        root_path: str,
        status: int,
        exc: BaseException | None,
        completed: tuple[float, int] | None = None,
    ) -> None:
        """End the span and record the duration.

        Both stop when the response's last body chunk was sent (``completed``), not
        when the app returns: background tasks run after that and must not count as
        request latency. Without a complete response, they stop now.
        """
        span, token, t0, method, span_method, scheme, _ = started
        try:
            if completed is None:
                elapsed, end_ns = time.perf_counter() - t0, None
            else:
                elapsed, end_ns = completed[0] - t0, completed[1]
            route = _route_template(scope, root_path)
            error: str | None = None
            if exc is not None:
                error = _error_type(exc)
            elif status >= 500:
                error = str(status)
            if error is None and type(span) is LeanSpan:  # the common case, in one call
                span.set_name_and_scalars(
                    None if route is None else self._span_name(span_method, route),
                    HTTP_ROUTE,
                    route,
                    HTTP_RESPONSE_STATUS_CODE,
                    status or None,
                )
            elif span.is_recording():
                if route is not None:
                    span.update_name(self._span_name(span_method, route))
                    span.set_attribute(HTTP_ROUTE, route)
                if status:
                    span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
                if error is not None:
                    span.set_attribute(ERROR_TYPE, error)
                    if exc is not None:
                        span.record_exception(exc)
                        # The server logs this exception after our span has ended; let the
                        # log record factory find the request's trace on the exception.
                        with contextlib.suppress(Exception):
                            setattr(exc, EXCEPTION_SPAN_ATTR, span.get_span_context())
                        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                    else:
                        span.set_status(Status(StatusCode.ERROR))
            # Recorded while the span is current: exemplars point at this request.
            key = (method, route, status, scheme, error)
            lean = self._lean_duration
            if lean is not None:
                lean.record(elapsed, key, self._metric_attributes(key), span.get_span_context())
            elif self.duration is not None:
                self.duration.record(elapsed, self._metric_attributes(key))
            span.end(end_time=end_ns)
        finally:
            if self._var is not None:
                self._var.reset(token)
            else:
                otel_context.detach(token)

    def _begin_py(self, scope: Scope, send: Send) -> _Exchange:
        """Mark the scope as traced, start the span and wrap ``send`` (see :class:`_Exchange`)."""
        scope[SCOPE_KEY] = True
        root_path = scope.get("root_path") or ""
        started = self._start(scope)
        outer = started[6] if self._isolates_final_send(send) else None
        return _Exchange(scope, started, root_path, send, outer, self._final_send)

    def _end_py(self, exchange: _Exchange, exc: BaseException | None) -> None:
        self._finish(
            exchange.scope,
            exchange.started,
            exchange.root_path,
            exchange.status,
            exc,
            exchange.completed,
        )

    async def _final_send(self, exchange: _Exchange, message: Message) -> None:
        """The last body chunk: sent (outside the span for uvicorn, see module doc), then timed."""
        outer, var = exchange.outer, self._var
        if outer is not None and var is not None:
            token = var.set(outer)  # uvicorn's keep-alive bookkeeping: see module doc
            try:
                await exchange.send(message)
            finally:
                var.reset(token)
        else:
            await exchange.send(message)
        exchange.completed = (time.perf_counter(), time.time_ns())

    async def handle(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` for one HTTP request inside its server span."""
        try:
            exchange = self.begin(scope, send)
        except Exception:
            report_internal_error("fastapi: starting the request span")
            await app(scope, receive, send)
            return
        exc: BaseException | None = None
        try:
            await app(scope, receive, exchange)
        except BaseException as error:
            exc = error
            raise
        finally:
            try:
                self.end(exchange, exc)
            except Exception:
                report_internal_error("fastapi: ending the request span")


class _Exchange:
    """One traced request: the ``send`` the application gets, and what ``_finish`` needs.

    Called with a message, it notes the response status and returns the server's own
    awaitable (it is not a coroutine function), except for the last body chunk, which goes
    to ``final_send`` to time the end of the response. The span stays current while the
    server's ``send`` runs, so access lines written there are correlated. (The C path's
    ``_asgi_speedups.Exchange`` is the same, in C.)
    """

    __slots__ = ("completed", "final_send", "outer", "root_path", "scope", "send", "started",
                 "status")  # fmt: skip

    def __init__(
        self,
        scope: Scope,
        started: _Started,
        root_path: str,
        send: Send,
        outer: Context | None,
        final_send: Callable[[Any, Message], Awaitable[None]],
    ) -> None:
        self.scope = scope
        self.started = started
        self.root_path = root_path
        self.send = send
        self.outer = outer
        self.final_send = final_send
        self.status = 0
        self.completed: tuple[float, int] | None = None  # (perf_counter, time_ns), last byte

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message.get("status") or 0
        elif kind == "http.response.body" and not message.get("more_body", False):
            return self.final_send(self, message)
        return self.send(message)


def _route_template(scope: Scope, root_path: str) -> str | None:
    """The matched route's template, with the prefix of any mount it sits under."""
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    current_root = scope.get("root_path") or ""
    if current_root != root_path:
        prefix = current_root[len(root_path) :] if current_root.startswith(root_path) else ""
        if hasattr(route, "routes") and template.endswith("/{path}"):  # the route is itself a Mount
            return prefix + "/{path}"
        return prefix + template
    return template


class LeanASGIMiddleware:
    """Pure ASGI middleware form of :class:`ServerTelemetry`, for any ASGI application."""

    def __init__(self, app: ASGIApp, telemetry: ServerTelemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        await self.telemetry.handle(self.app, scope, receive, send)
