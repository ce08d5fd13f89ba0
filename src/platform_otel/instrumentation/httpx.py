"""httpx client spans and ``http.client.request.duration``, via the official instrumentor.

Outgoing requests carry ``traceparent`` so the next service continues the trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._contrib import prefer_stable_http_semconv, run_instrumentor

if TYPE_CHECKING:
    from . import InstrumentationContext

__all__ = ["LIBRARY", "instrument", "uninstrument"]

LIBRARY = "httpx"
_instrumentor: Any = None


def instrument(ctx: InstrumentationContext) -> str | None:
    global _instrumentor
    prefer_stable_http_semconv()
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _instrumentor = HTTPXClientInstrumentor()
    return run_instrumentor(_instrumentor, ctx)


def uninstrument() -> None:
    if _instrumentor is not None and _instrumentor.is_instrumented_by_opentelemetry:
        _instrumentor.uninstrument()
