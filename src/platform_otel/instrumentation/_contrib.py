"""Integrations that delegate to an official OpenTelemetry contrib instrumentor.

The contrib instrumentors are good for HTTP clients; what we add is the
provider wiring, the stable semantic conventions, and never instrumenting twice
(``opentelemetry-instrument`` may already have done it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._config import SEMCONV_OPT_IN  # what init() makes them see (platform_otel._sdk_env)

if TYPE_CHECKING:
    from . import InstrumentationContext

__all__ = ["SEMCONV_OPT_IN", "ContribIntegration"]


class ContribIntegration:
    """``instrument``/``uninstrument`` for one contrib instrumentor class, imported lazily."""

    def __init__(self, module: str, class_name: str) -> None:
        self._module = module
        self._class_name = class_name
        self._instrumentor: Any = None

    def instrument(self, ctx: InstrumentationContext) -> str | None:
        # Contrib instrumentors read OTEL_SEMCONV_STABILITY_OPT_IN once; init() makes them
        # see "http,database" when it is unset (the stable names http.request.method,
        # url.full, db.query.text...), without writing it into the environment:
        # platform_otel._sdk_env.
        from ._entry_points import defer_until_loaded, retry_deferred

        cls = getattr(importlib.import_module(self._module), self._class_name, None)
        if cls is None:
            # Called from an import hook while that very module is being imported (it
            # imports httpx and httpx2 at its top): finish once it is complete.
            defer_until_loaded(
                f"{self._module}:{self._class_name}",
                self._module,
                self._class_name,
                lambda: self.instrument(ctx),
            )
            return None
        retry_deferred()  # an entry point whose library this import pulled in (httpx2)
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
