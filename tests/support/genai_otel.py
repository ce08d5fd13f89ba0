"""In-memory OpenTelemetry providers with the Ollama (and httpx) integrations installed.

Shared by tests/test_ollama.py (simulated server) and tests/test_ollama_real.py
(real server): spans from an in-memory exporter, metrics from an in-memory reader,
and a check that every emitted name is in docs/telemetry.md.
"""

from __future__ import annotations

import types
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import httpx as httpx_integration
from platform_otel.instrumentation import ollama as po
from tests.support.documented import assert_documented, assert_span_names_documented

__all__ = ["Otel"]


def _instrument_httpx_with_stable_names(ctx: InstrumentationContext) -> None:
    """The httpx integration, emitting the stable HTTP names as under ``init()``.

    ``init()`` makes the contrib instrumentor see ``OTEL_SEMCONV_STABILITY_OPT_IN=http,database``
    (platform_otel._sdk_env); these providers bypass ``init()``. The instrumentor reads the
    setting once per process and keeps the mode it instruments with, so the setting is
    applied for this one ``instrument()`` and the process-wide state is put back after it.
    """
    import os

    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )

    saved = Stability._initialized, dict(Stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING)
    saved_env = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN")
    if not (saved_env or "").strip():
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "http,database"
    Stability._initialized = False
    try:
        httpx_integration.instrument(ctx)
    finally:
        if saved_env is None:
            os.environ.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
        else:
            os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = saved_env
        Stability._initialized, Stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = saved


class Otel:
    """In-memory providers with the httpx and Ollama integrations installed on them."""

    def __init__(self, *, capture_content: bool = False, ps_interval: float = 0.0) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        settings = types.SimpleNamespace(
            capture_content=capture_content, ollama_ps_interval=ps_interval
        )
        self.ctx = InstrumentationContext(
            settings=settings,  # type: ignore[arg-type]
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            logger_provider=None,
        )

    def __enter__(self) -> Otel:
        _instrument_httpx_with_stable_names(self.ctx)
        assert po.instrument(self.ctx) is None
        return self

    def __exit__(self, *exc: object) -> None:
        po.uninstrument()
        httpx_integration.uninstrument()

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        out = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = metric
        return out

    def assert_all_documented(self) -> None:
        spans = self.spans()
        assert_span_names_documented((s.name, dict(s.attributes or {})) for s in spans)
        names = {k for s in spans for k in (s.attributes or {})}
        for metric in self.metrics().values():
            names.add(metric.name)
            for point in metric.data.data_points:
                names.update(point.attributes or {})
        assert_documented(names)
