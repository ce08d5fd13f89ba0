"""Test helpers: capture telemetry in memory and assert on it.

    from platform_otel.testing import capture

    cap = capture()
    pipe = platform_otel.pipeline("ingest", tracer_provider=cap.tracer_provider,
                                  meter_provider=cap.meter_provider)
    ...
    assert [s.name for s in cap.spans()] == ["ingest convert"]
    assert cap.metric_points("pipeline.items")[0].value == 1

Before ``init()`` (or without it) the providers are private to the capture (not
installed globally), so tests stay independent of each other. After ``init()``,
``capture()`` attaches to the providers ``init()`` installed instead: it sees what
the integrations emit (request spans, log records, the HTTP duration histogram) next
to the configured exporters, which keep working. ``close()`` detaches it.
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
    log_exporter: Any = None
    _metrics_cache: dict[str, list[Any]] = field(default_factory=dict)
    _undo: list[Any] = field(default_factory=list)

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

    def logs(self) -> list[Any]:
        """Finished log records (only for a capture attached to ``init()``)."""
        if self.log_exporter is None:
            return []
        return list(self.log_exporter.get_finished_logs())

    def clear(self) -> None:
        self.span_exporter.clear()
        if self.log_exporter is not None:
            self.log_exporter.clear()

    def close(self) -> None:
        """Detach from ``init()``'s providers (a no-op for a private capture)."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def capture(service_name: str = "test") -> Capture:
    """In-memory span, metric (and, after ``init()``, log) capture; see the module doc."""
    from ._telemetry import current

    telemetry = current()
    if telemetry is not None and telemetry.enabled:
        return _attach(telemetry)
    resource = Resource.create({"service.name": service_name})
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )
    return Capture(tracer_provider, meter_provider, exporter, reader)


class _Switch(SimpleSpanProcessor):
    """A span processor that stops passing spans on once its capture is closed."""

    active = True

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


def _attach(telemetry: Any) -> Capture:
    from . import _fast

    exporter = InMemorySpanExporter()
    processor = _Switch(exporter)
    telemetry.tracer_provider.add_span_processor(processor)
    cap = Capture(
        telemetry.tracer_provider, telemetry.meter_provider, exporter, InMemoryMetricReader()
    )

    def stop_spans() -> None:
        processor.active = False

    cap._undo.append(stop_spans)
    add_reader = getattr(telemetry.meter_provider, "add_metric_reader", None)
    if add_reader is not None:  # SDK >= 1.4x: a reader can join a running provider
        add_reader(cap.metric_reader)
        _fast.reader_added(cap.metric_reader)
        cap._undo.append(lambda: telemetry.meter_provider.remove_metric_reader(cap.metric_reader))
    if telemetry.logger_provider is not None:
        from opentelemetry.sdk._logs.export import (
            InMemoryLogRecordExporter,
            SimpleLogRecordProcessor,
        )

        cap.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        log_processor = SimpleLogRecordProcessor(cap.log_exporter)
        telemetry.logger_provider.add_log_record_processor(log_processor)
        cap._undo.append(log_processor.shutdown)
    return cap
