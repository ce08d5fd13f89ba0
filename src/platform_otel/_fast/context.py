"""Direct access to the OpenTelemetry runtime context, for per-request and per-record hot paths.

Why: ``opentelemetry.context.attach`` / ``detach`` / ``get_current`` and
``trace.set_span_in_context`` are two to four Python frames each around one
``ContextVar`` operation, and a traced request runs several of them. With the
API's default runtime context (``contextvars``), this module hands out that
``ContextVar`` itself. With any other runtime context (``OTEL_PYTHON_CONTEXT``
set to a custom implementation) :func:`current_var` returns ``None`` and callers
use the API, so behaviour never differs.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

__all__ = ["SPAN_KEY", "current_var", "span_context_with"]


def _span_key() -> str:
    """The context key under which the API keeps the current span, found through the public API."""
    (key,) = trace.set_span_in_context(trace.INVALID_SPAN, Context())
    return key


#: Key of the current span in a :class:`Context`.
SPAN_KEY = _span_key()


def current_var() -> ContextVar[Context] | None:
    """The ``ContextVar`` holding the current :class:`Context`; ``None`` with a custom runtime."""
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if type(runtime) is ContextVarsRuntimeContext:
            var = getattr(runtime, "_current_context", None)
            if isinstance(var, ContextVar):
                return var
    except Exception:  # API internals moved: the public functions still work
        pass
    return None


def span_context_with(span: Any, parent: Context) -> Context:
    """``trace.set_span_in_context(span, parent)`` without its frames when ``parent`` is empty."""
    if not parent:
        return Context({SPAN_KEY: span})
    return trace.set_span_in_context(span, parent)
