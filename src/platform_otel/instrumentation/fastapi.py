"""FastAPI integration: every app, created before or after ``init()``, traced exactly once.

The hook sits on ``fastapi.FastAPI.__call__`` (class level), so it reaches apps
that already exist, apps created later and apps whose middleware stack was
already built. In the default (lean) mode it is a plain function, not a wrapt
wrapper: binding a wrapt ``FunctionWrapper`` to the app and packing the call's
arguments cost ~0.8 µs per request in a micro-benchmark (a few times that in a
real worker). Per request it decides, cheaply, whether this layer should trace:

* not for lifespan scopes (websockets are traced: one span per connection), nor for a
  request an outer layer already
  traces (a FastAPI app mounted inside another one);
* not for an app the official ``FastAPIInstrumentor`` instrumented
  (``app._is_instrumented_by_opentelemetry``): that app already has a server span;
* not for an app built with ``FastAPI(telemetry={"tracer_provider": ...})``: its
  owner chose FastAPI's native telemetry explicitly.

Otherwise the lean ASGI path (``_asgi.ServerTelemetry``) traces the request and
FastAPI's own native request telemetry is turned off for that request, so there
is one server span, not two. (FastAPI releases that ship ``fastapi.telemetry``
switch it on by themselves as soon as global SDK providers exist, i.e. right
after ``init()``, and add per-operation child spans.)

``settings.fastapi_impl`` selects the implementation:

* ``"lean"`` (default): the lean ASGI path above;
* ``"official"``: ``FastAPIInstrumentor.instrument_app`` (with
  ``exclude_spans=["receive", "send"]``) applied once to every app on its first call;
* ``"native"``: leave tracing to FastAPI's built-in telemetry (global providers).
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any

import wrapt

from .._otel_private import instrumented_by_official
from .._safety import log_once, report_internal_error
from . import InstrumentationContext
from ._asgi import SCOPE_KEY, TRACED_SCOPE_TYPES, ServerOptions, ServerTelemetry

__all__ = ["IMPLEMENTATIONS", "LIBRARY", "instrument", "uninstrument"]

LIBRARY = "fastapi"
IMPLEMENTATIONS = ("lean", "official", "native")
_SCOPE = "platform_otel.instrumentation.fastapi"
_NATIVE_KEY = "fastapi.telemetry"  # FastAPI's native telemetry skips requests carrying this key
_DECISION_ATTR = "_platform_otel_native"  # cached per app: owner configured native telemetry

_mode: str | None = None
_telemetry: ServerTelemetry | None = None
_official_kwargs: dict[str, Any] = {}
_official_apps: weakref.WeakSet[Any] = weakref.WeakSet()


def _explicit_native(app: Any) -> bool:
    """Whether the app's owner passed their own provider to FastAPI's native telemetry."""
    decision = app.__dict__.get(_DECISION_ATTR)
    if decision is None:
        config = getattr(app, "_telemetry", None)
        decision = isinstance(config, dict) and (
            config.get("tracer_provider") is not None and config.get("tracing", True) is not False
        )
        app.__dict__[_DECISION_ATTR] = decision
    return bool(decision)


def _lean_hook(original: Any) -> Any:
    """``FastAPI.__call__`` replaced by a plain function that traces requests (see module doc)."""

    # A coroutine function, like the method it replaces: servers and frameworks inspect it
    # (uvicorn takes an app whose __call__ is not one for an ASGI2 app).
    # It does what ServerTelemetry.handle does, inline: one coroutine frame less for every
    # suspension of the request, and no bound method to build (docs/performance.md).
    @functools.wraps(original)
    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        telemetry = _telemetry
        exchange = None
        try:
            if not (
                telemetry is None
                or scope.get("type") not in TRACED_SCOPE_TYPES
                or SCOPE_KEY in scope
                or instrumented_by_official(self)
                or _explicit_native(self)
            ):
                scope[_NATIVE_KEY] = None  # one server span: ours replaces FastAPI's native one
                exchange = telemetry.begin(scope, send, self)
        except Exception:
            report_internal_error("fastapi: starting the request span")
        if exchange is None or telemetry is None:
            await original(self, scope, receive, send)
            return
        exc: BaseException | None = None
        try:
            await original(self, scope, receive, exchange)
        except BaseException as error:
            exc = error
            raise
        finally:
            try:
                telemetry.end(exchange, exc)
            except Exception:
                report_internal_error("fastapi: ending the request span")

    __call__._platform_otel_hook = True  # type: ignore[attr-defined]
    return __call__


def _official_call(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _mode == "official" and not instrumented_by_official(instance):
        try:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(instance, **_official_kwargs)
            instance.middleware_stack = None  # rebuilt by Starlette with the official middleware
            _official_apps.add(instance)
        except Exception:
            report_internal_error("fastapi: official instrumentation of an app")
    return wrapped(*args, **kwargs)


def instrument(ctx: InstrumentationContext) -> str | None:
    """Hook ``FastAPI.__call__``; idempotent. Returns a reason string to decline."""
    global _mode, _telemetry, _official_kwargs
    if _mode is not None:
        return None
    impl = str(ctx.settings.fastapi_impl or "lean").strip().lower()
    if impl not in IMPLEMENTATIONS:
        log_once(
            f"fastapi_impl:{impl}",
            logging.WARNING,
            "platform-otel: unknown fastapi implementation %r (PLATFORM_OTEL_FASTAPI_IMPL); using 'lean'",
            impl,
        )
        impl = "lean"
    import fastapi

    if impl == "native":
        _mode = impl
        return None
    if impl == "official":
        try:
            import opentelemetry.instrumentation.fastapi  # noqa: F401
        except ImportError:
            return "fastapi_impl='official' needs opentelemetry-instrumentation-fastapi"
        _official_kwargs = {
            "tracer_provider": ctx.tracer_provider,
            "meter_provider": ctx.meter_provider,
            "exclude_spans": ["receive", "send"],
        }
        if ctx.settings.http_excluded_urls:  # read at its import otherwise, not at init()
            _official_kwargs["excluded_urls"] = ",".join(ctx.settings.http_excluded_urls)
        if ctx.settings.server_request_hook is not None:
            _official_kwargs["server_request_hook"] = ctx.settings.server_request_hook
        wrapt.wrap_function_wrapper(fastapi.FastAPI, "__call__", _official_call)
        _mode = impl
        return None
    tracer = ctx.tracer_provider.get_tracer(_SCOPE)
    meter = ctx.meter_provider.get_meter(_SCOPE)
    _telemetry = ServerTelemetry(tracer, meter, ServerOptions.from_settings(ctx.settings))
    fastapi.FastAPI.__call__ = _lean_hook(fastapi.FastAPI.__call__)  # type: ignore[method-assign]
    _mode = impl
    return None


def uninstrument() -> None:
    """Remove the hook; apps instrumented in ``official`` mode are un-instrumented too."""
    global _mode, _telemetry
    if _mode is None:
        return
    import fastapi

    call = fastapi.FastAPI.__dict__.get("__call__")
    if getattr(call, "_platform_otel_hook", False) or (
        isinstance(call, wrapt.FunctionWrapper) and call._self_wrapper is _official_call
    ):
        fastapi.FastAPI.__call__ = call.__wrapped__  # type: ignore[method-assign, union-attr]
    if _mode == "official":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        for app in list(_official_apps):
            try:
                FastAPIInstrumentor.uninstrument_app(app)
            except Exception:
                report_internal_error("fastapi: official uninstrument of an app")
        _official_apps.clear()
    _telemetry = None
    _mode = None
