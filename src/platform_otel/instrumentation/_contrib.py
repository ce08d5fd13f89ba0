"""Integrations that delegate to an official OpenTelemetry contrib instrumentor.

The contrib instrumentors are good for HTTP clients; what we add is the
provider wiring, the stable semantic conventions, and never instrumenting twice
(``opentelemetry-instrument`` may already have done it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import InstrumentationContext

__all__ = ["ContribIntegration"]


class ContribIntegration:
    """``instrument``/``uninstrument`` for one contrib instrumentor class, imported lazily."""

    def __init__(self, module: str, class_name: str) -> None:
        self._module = module
        self._class_name = class_name
        self._instrumentor: Any = None

    def instrument(self, ctx: InstrumentationContext) -> str | None:
        # Contrib instrumentors read OTEL_SEMCONV_STABILITY_OPT_IN once; init() makes them
        # see "http" when it is unset (the stable names http.request.method, url.full...),
        # without writing it into the environment: platform_otel._sdk_env.
        cls = getattr(importlib.import_module(self._module), self._class_name)
        self._instrumentor = instrumentor = cls()
        if instrumentor.is_instrumented_by_opentelemetry:
            return None  # the app or opentelemetry-instrument already did it: never twice
        instrumentor.instrument(
            tracer_provider=ctx.tracer_provider,
            meter_provider=ctx.meter_provider,
            skip_dep_check=True,
        )
        return None

    def uninstrument(self) -> None:
        if self._instrumentor is not None and self._instrumentor.is_instrumented_by_opentelemetry:
            self._instrumentor.uninstrument()
