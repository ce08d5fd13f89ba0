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

Where the route is known before the application runs (FastAPI: the app's routes are
matched as the official instrumentation matches them, cached per path), the span is
started with its final name and ``http.route``, so samplers and ``on_start`` of span
processors see them. A name the application sets with ``update_name`` is kept.

The span and histogram objects come from :mod:`platform_otel._fast` when it is on
(lean spans, pre-aggregated histogram), else from the SDK: the code below is the same
for both, and ``tests/test_fast_parity.py`` compares their output with each other and
with the official instrumentation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from .. import _fast
from .._fast.context import current_var, span_context_with
from .._safety import report_internal_error
from .logging import EXCEPTION_SPAN_ATTR

__all__ = [
    "DURATION_BUCKETS",
    "SCOPE_KEY",
    "TRACED_SCOPE_TYPES",
    "LeanASGIMiddleware",
    "ServerOptions",
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
_ROUTES_ATTR = "_platform_otel_routes"  # per app: (routes, their count, cacheable, cache, flat)
_MISS = object()


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


class _Carrier(dict[str, list[str]]):
    """Propagation headers of one request, in the shape ``DefaultGetter`` reads."""


#: ASGI scope types that get a server span (one per HTTP request or WebSocket connection).
TRACED_SCOPE_TYPES = frozenset({"http", "websocket"})


@dataclass(frozen=True)
class ServerOptions:
    """What the official instrumentation takes from ``OTEL_*`` variables and hooks.

    Built once from :class:`~platform_otel._config.Settings` (:meth:`from_settings`).
    """

    excluded_urls: Any = None  # opentelemetry.util.http.ExcludeList, or None
    request_headers: tuple[str, ...] = ()
    response_headers: tuple[str, ...] = ()
    sanitize: Any = None  # opentelemetry.util.http.SanitizeValue
    request_hook: Callable[[Any, Scope], None] | None = None
    response_hook: Callable[[Any, Scope, Message], None] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> ServerOptions:
        from opentelemetry.util.http import ExcludeList, SanitizeValue

        excluded = tuple(settings.http_excluded_urls)
        return cls(
            excluded_urls=ExcludeList(list(excluded)) if excluded else None,
            request_headers=tuple(settings.http_capture_request_headers),
            response_headers=tuple(settings.http_capture_response_headers),
            sanitize=SanitizeValue(list(settings.http_sanitize_headers)),
            request_hook=settings.server_request_hook,
            response_hook=settings.server_response_hook,
        )


def _header_attributes(
    headers: Any, patterns: Sequence[str], sanitize: Any, request: bool
) -> dict[str, tuple[str, ...]]:
    """``http.{request,response}.header.<name>`` attributes, as the official instrumentation
    builds them (names matched in full, case-insensitive; sanitized values redacted)."""
    from opentelemetry.util.http import (
        SanitizeValue,
        normalise_request_header_name,
        normalise_response_header_name,
    )

    values: dict[str, list[str]] = {}
    for name, value in headers or ():
        values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    found = (sanitize or SanitizeValue([])).sanitize_header_values(
        values,
        list(patterns),
        normalise_request_header_name if request else normalise_response_header_name,
    )
    return {name: tuple(items) for name, items in found.items()}  # as the SDK stores sequences


def _full_url(scope: Scope, host: bytes | None) -> str:
    """The request URL as the official instrumentation builds it for excluded-URL matching."""
    scheme = scope.get("scheme") or "http"
    if host is not None:
        netloc = host.decode("latin-1")
    else:
        server = scope.get("server") or ("0.0.0.0", 80)
        netloc = server[0] + (f":{server[1]}" if str(server[1]) != "80" else "")
    path = (scope.get("root_path") or "") + (scope.get("path") or "")
    return f"{scheme}://{netloc}{path}"


def _flatten(routes: Sequence[Any]) -> list[Any]:
    """The app's matchable routes, as the official instrumentation flattens them (FastAPI
    >= 0.137 nests included routers)."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.137.2
    except ImportError:
        pass
    else:
        return list(iter_route_contexts(routes))
    out: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        out.extend(contexts() if contexts is not None else (route,))
    return out


def _match(routes: Sequence[Any], scope: Scope) -> str | None:
    """The template of the route the router will take for ``scope`` (mount prefixes
    included), the official instrumentation's rule: the first full match, else the last
    partial one (a 405)."""
    from starlette.routing import Match

    found: str | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):  # a Host route: no template of its own
            path = str(scope.get("path") or "/")
        inner_routes = getattr(route, "routes", None)
        if match == Match.FULL and inner_routes:  # a Mount: the template inside it
            inner = _match(_flatten(inner_routes), {**scope, **child})
            return path + (inner if inner is not None else "/{path}")
        if match == Match.FULL:
            return path
        found = path
    return found


def _default_sampler_description(tracer: Any) -> bool:
    from opentelemetry.sdk.trace.sampling import DEFAULT_ON

    sampler = getattr(tracer, "sampler", None)
    try:
        description = sampler.get_description()  # type: ignore[union-attr]
        return sampler is not None and bool(description == DEFAULT_ON.get_description())  # type: ignore[no-untyped-call]
    except Exception:
        return False


class ServerTelemetry:
    """Per-process state of the HTTP server instrumentation (tracer, histogram, caches)."""

    def __init__(self, tracer: Tracer, meter: Meter, options: ServerOptions | None = None) -> None:
        self.tracer = tracer
        self.options = options or ServerOptions()
        # Lean span and histogram where the fast path is on (_fast), else the SDK's.
        self._lean = _fast.tracer(tracer)
        self._lean_duration = _fast.histogram(
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
        # Whether the provider's sampler is the SDK default (parentbased_always_on), which
        # starts a span with exactly the attributes it was given (public description only).
        self._plain_sampler = _default_sampler_description(tracer)
        opts = self.options
        self._observed = bool(opts.response_hook or opts.response_headers)

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

    def _extract(self, items: list[tuple[bytes, bytes]]) -> Context:
        """The context carried by a request's propagation headers."""
        carrier = _Carrier()
        for name, value in items:
            carrier.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return propagate.extract(carrier, context=_ROOT_CONTEXT)

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

    def _route(self, app: Any, scope: Scope) -> str | None:
        """The template of the route ``app`` will run for ``scope``, before it runs.

        Matching depends only on the scope's type, path and method unless the app routes
        by host: then it is matched per request, else cached per app (bounded)."""
        routes = getattr(app, "routes", None)
        if not routes:
            return None
        entry = app.__dict__.get(_ROUTES_ATTR)
        if entry is None or entry[0] is not routes or entry[1] != len(routes):
            flat = _flatten(routes)
            cacheable = not any(type(r).__name__ == "Host" for r in flat)
            entry = (routes, len(routes), cacheable, {}, flat)
            app.__dict__[_ROUTES_ATTR] = entry
        cache = entry[3]
        key = (scope["type"], scope.get("root_path"), scope.get("path"), scope.get("method"))
        hit = cache.get(key, _MISS)
        if hit is _MISS:
            hit = _match(entry[4], scope)
            if entry[2] and len(cache) < _CACHE_LIMIT:
                cache[key] = hit
        return hit  # type: ignore[no-any-return]

    def _sdk_start(
        self, name: str, parent: Context, kind: SpanKind, attributes: dict[str, Any]
    ) -> Any:
        return self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)

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

    def begin(self, scope: Scope, send: Send, app: Any = None) -> _Exchange | None:
        """Start and attach the request's span; the ``send`` the app gets, or None when the
        request is not traced (an excluded URL). ``app``: whose routes name the span."""
        scope[SCOPE_KEY] = True
        websocket = scope["type"] == "websocket"
        raw_method = "GET" if websocket else (scope.get("method") or "")
        method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        scheme = scope.get("scheme") or ("ws" if websocket else "http")
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
        options = self.options
        if options.excluded_urls is not None and options.excluded_urls.url_disabled(
            _full_url(scope, host)
        ):
            return None
        route = self._route(app, scope) if app is not None else None
        parent = _ROOT_CONTEXT if items is None else self._extract(items)
        address, port = self._server(host, scope, scheme)
        attributes: dict[str, Any] = {}
        if not websocket:
            attributes[HTTP_REQUEST_METHOD] = method
            if method == "_OTHER":
                attributes[HTTP_REQUEST_METHOD_ORIGINAL] = raw_method
        attributes[URL_SCHEME] = scheme
        attributes[URL_PATH] = scope.get("path") or "/"
        if route is not None:
            attributes[HTTP_ROUTE] = route
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
        if options.request_headers:
            attributes.update(
                _header_attributes(
                    scope.get("headers"), options.request_headers, options.sanitize, True
                )
            )
        span_method = "HTTP" if method == "_OTHER" else method
        if websocket:
            name = route or "websocket"  # never the raw path (cardinality)
        else:
            name = span_method if route is None else self._span_name(span_method, route)
        lean = self._lean
        start = lean.start_span if lean is not None else self._sdk_start
        if self._plain_sampler:  # the span keeps exactly these attributes
            span = start(name, parent, SpanKind.SERVER, attributes)
        else:
            span = start(name, parent, SpanKind.SERVER, dict(attributes))
            # A sampler may return other attributes than it was given (the span then starts
            # with those, the SDK's rule): set ours again, as the official instrumentation does.
            if span.is_recording():
                span.set_attributes(attributes)
        context = span_context_with(span, parent)
        var = self._var
        if var is not None:
            outer = var.get()
            token = var.set(context)
        else:
            outer = otel_context.get_current()
            token = otel_context.attach(context)
        if options.request_hook is not None and span.is_recording():
            _call_hook(options.request_hook, span, scope)
        exchange_type = _ObservedExchange if self._observed else _Exchange
        return exchange_type(
            self,
            scope,
            (span, token, time.perf_counter(), method, name, scheme, route, websocket),
            send,
            outer if self._isolates_final_send(send) else None,
        )

    def end(self, exchange: _Exchange, exc: BaseException | None) -> None:
        """End the span and record the duration.

        Both stop when the response's last body chunk was sent (``completed``), not
        when the app returns: background tasks run after that and must not count as
        request latency. Without a complete response, they stop now.
        """
        span, token, t0, method, name, scheme, route, websocket = exchange.started
        completed = exchange.completed
        try:
            if completed is None:
                elapsed, end_ns = time.perf_counter() - t0, None
            else:
                elapsed, end_ns = completed[0] - t0, completed[1]
            status = exchange.status
            error: str | None = None
            if exc is not None:
                error = _error_type(exc)
            elif status >= 500:
                error = str(status)
            if route is None:  # not known at start (a plain ASGI app): the router's, now
                route = _route_template(exchange.scope, exchange.root_path)
                if route is not None and span.is_recording():
                    span.set_attribute(HTTP_ROUTE, route)
                    if getattr(span, "name", None) == name:  # not renamed by the app
                        span.update_name(route if websocket else self._span_name(name, route))
            if status and span.is_recording():
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
            if error is not None and span.is_recording():
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
            if not websocket:
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

    async def final_send(self, exchange: _Exchange, message: Message) -> None:
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

    async def handle(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, routes: Any = None
    ) -> None:
        """Run ``app`` for one request inside its server span (``routes``: the app whose
        routes name the span before it runs)."""
        try:
            exchange = self.begin(scope, send, routes)
        except Exception:
            report_internal_error("fastapi: starting the request span")
            exchange = None
        if exchange is None:
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


def _call_hook(hook: Callable[..., None], *args: Any) -> None:
    """A user hook: its exception is reported once and never reaches the request."""
    try:
        hook(*args)
    except Exception:
        report_internal_error("a server request/response hook (init(server_*_hook=...))")


class _Exchange:
    """One traced request: the ``send`` the application gets, and what ``end`` needs.

    Called with a message, it notes the response status and returns the server's own
    awaitable (it is not a coroutine function), except for the last body chunk, which goes
    to ``final_send`` to time the end of the response. The span stays current while the
    server's ``send`` runs, so access lines written there are correlated.
    """

    __slots__ = ("completed", "outer", "root_path", "scope", "send", "started", "status",
                 "telemetry")  # fmt: skip

    def __init__(
        self,
        telemetry: ServerTelemetry,
        scope: Scope,
        started: tuple[Any, ...],
        send: Send,
        outer: Context | None,
    ) -> None:
        self.telemetry = telemetry
        self.scope = scope
        # (span, token, t0, method, name at start, scheme, route at start, websocket)
        self.started = started
        self.root_path = scope.get("root_path") or ""
        self.send = send
        self.outer = outer
        self.status = 0
        self.completed: tuple[float, int] | None = None  # (perf_counter, time_ns), last byte

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message.get("status") or 0
        elif kind == "http.response.body" and not message.get("more_body", False):
            return self.telemetry.final_send(self, message)
        return self.send(message)


class _ObservedExchange(_Exchange):
    """An exchange that also captures response headers and calls the response hook."""

    __slots__ = ()

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            span = self.started[0]
            if span.is_recording():
                options = self.telemetry.options
                try:
                    if options.response_headers:
                        span.set_attributes(
                            _header_attributes(
                                message.get("headers"),
                                options.response_headers,
                                options.sanitize,
                                False,
                            )
                        )
                except Exception:
                    report_internal_error("capturing response headers")
                if options.response_hook is not None:
                    _call_hook(options.response_hook, span, self.scope, message)
        return super().__call__(message)


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
        if scope.get("type") not in TRACED_SCOPE_TYPES or SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        await self.telemetry.handle(self.app, scope, receive, send)
