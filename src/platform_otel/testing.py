"""Test helpers: capture telemetry in memory and assert on it.

    from platform_otel.testing import capture

    cap = capture()
    pipe = platform_otel.pipeline("ingest", tracer_provider=cap.tracer_provider,
                                  meter_provider=cap.meter_provider)
    ...
    assert [s.name for s in cap.spans()] == ["ingest convert"]
    assert cap.metric_points("pipeline.items")[0].value == 1

The providers are private to the capture (not installed globally), so tests
stay independent of each other and of ``init()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["Capture", "capture"]


@dataclass
class Capture:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    _metrics_cache: dict[str, list[Any]] = field(default_factory=dict)

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in end order."""
        return list(self.span_exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Collect now; metric name -> data points (cumulative)."""
        data = self.metric_reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def metric_points(self, name: str) -> list[Any]:
        return self.metrics().get(name, [])

    def clear(self) -> None:
        self.span_exporter.clear()


def capture(service_name: str = "test") -> Capture:
    """Fresh in-memory tracer and meter providers."""
    resource = Resource.create({"service.name": service_name})
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )
    return Capture(tracer_provider, meter_provider, exporter, reader)
