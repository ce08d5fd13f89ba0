"""Helpers for integrations that delegate to an official OpenTelemetry contrib instrumentor."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import InstrumentationContext

__all__ = ["prefer_stable_http_semconv", "run_instrumentor"]


def prefer_stable_http_semconv() -> None:
    """Ask contrib instrumentors for the stable HTTP names (``http.request.method``, ...).

    They read ``OTEL_SEMCONV_STABILITY_OPT_IN`` once; a value the user set is kept.
    """
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


def run_instrumentor(instrumentor: Any, ctx: InstrumentationContext, **kwargs: Any) -> str | None:
    if instrumentor.is_instrumented_by_opentelemetry:
        return None  # opentelemetry-instrument (or the app) already did it: never twice
    instrumentor.instrument(
        tracer_provider=ctx.tracer_provider, meter_provider=ctx.meter_provider, skip_dep_check=True, **kwargs
    )
    return None
