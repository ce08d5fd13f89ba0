"""ResilientExporter: lazy, fork-aware, one warning per outage, never raises."""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from platform_otel import _fast
from platform_otel._exporters import (
    ResilientSpanExporter,
    in_export,
    mute_sdk_exporter_logs,
)
from platform_otel._fast.queue import queue_emitter


class FlakyExporter:
    """A stand-in collector client whose availability the test controls."""

    def __init__(self, log: list[str]) -> None:
        self.up = False
        self.raise_instead = False
        self.batches: list[Any] = []
        self.log = log
        self._timeout = 10.0

    def export(self, batch: Any) -> SpanExportResult:
        self.log.append(f"export in_export={in_export()}")
        if self.raise_instead:
            raise ConnectionError("boom")
        if not self.up:
            return SpanExportResult.FAILURE
        self.batches.append(batch)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def test_exporter_is_created_lazily_and_again_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client exists until the first export; a process with another pid builds its own."""
    built: list[FlakyExporter] = []
    log: list[str] = []

    def factory() -> FlakyExporter:
        built.append(FlakyExporter(log))
        built[-1].up = True
        return built[-1]

    exp = ResilientSpanExporter("traces", "test", factory)
    assert built == []
    exp.export([1])
    exp.export([2])
    assert len(built) == 1
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    exp.export([3])
    assert len(built) == 2 and built[1].batches == [[3]]


def test_outage_logs_one_warning_and_recovery_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Many failed exports give one warning; the first success after them gives one info line."""
    log: list[str] = []
    inner = FlakyExporter(log)
    exp = ResilientSpanExporter("traces", "http://collector:4317 (grpc)", lambda: inner)
    with caplog.at_level(logging.INFO, logger="platform_otel"):
        for _ in range(20):
            assert exp.export([object()]) == SpanExportResult.FAILURE
        inner.raise_instead = True
        assert exp.export([object()]) == SpanExportResult.FAILURE  # exception becomes a result
        inner.raise_instead = False
        inner.up = True
        assert exp.export([object()]) == SpanExportResult.SUCCESS
    messages = [r.getMessage() for r in caplog.records if r.name == "platform_otel"]
    warnings = [m for m in messages if "cannot export traces to http://collector:4317" in m]
    assert len(warnings) == 1, messages
    assert sum("exporting to http://collector:4317 (grpc) again" in m for m in messages) == 1
    assert exp.dropped == 21 and exp.exported == 1
    assert all(entry == "export in_export=True" for entry in log)
    assert not in_export()


def test_shutdown_caps_the_retry_budget_of_the_final_export() -> None:
    """begin_shutdown shortens the inner exporter's timeout to the remaining budget."""
    inner = FlakyExporter([])
    exp = ResilientSpanExporter("traces", "x", lambda: inner)
    exp.export([1])
    exp.begin_shutdown(time.monotonic() + 1.5)
    assert inner._timeout <= 1.5
    # After an outage, the final flush does not even try: the process exits promptly.
    assert exp.export([2]) == SpanExportResult.FAILURE
    assert exp.dropped == 2


def test_one_warning_per_endpoint_across_signals(caplog: pytest.LogCaptureFixture) -> None:
    """Traces and logs failing against the same collector give one warning, not two."""
    from platform_otel._exporters import ResilientLogExporter

    spans = ResilientSpanExporter("traces", "shared-endpoint", lambda: FlakyExporter([]))
    logs = ResilientLogExporter("logs", "shared-endpoint", lambda: FlakyExporter([]))
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        spans.export([1])
        logs.export([1])
        spans.export([1])
    assert sum("shared-endpoint" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_grpc_exporters_reconnect_quickly_and_keep_no_self_metrics(signal: str) -> None:
    """After a collector outage gRPC retries within 5 s (its default backoff grows to 120 s)."""
    from platform_otel._config import load_settings
    from platform_otel._exporters import make_exporters

    settings = load_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    [exporter] = make_exporters(signal, settings)
    # Encoded items only where the fast path runs (its encoder); the SDK path queues spans.
    assert exporter.accepts_encoded is (signal != "metrics" and _fast.active())
    inner = exporter._get_inner()
    try:
        options = dict(inner._channel_options)
        assert options["grpc.max_reconnect_backoff_ms"] == 5000
        assert options["grpc.initial_reconnect_backoff_ms"] <= 1000
    finally:
        inner.shutdown()


class BlockedExporter:
    """A collector client stuck in its first export, so the processor's queue fills up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, batch: Any) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


# SDK >= 1.4x counts the items its batch processors drop (a self-metric); older ones don't.
SDK_COUNTS_DROPS = "meter_provider" in inspect.signature(BatchSpanProcessor.__init__).parameters


def _full_queue_run(
    emit_with: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], float, list[str]]:
    """Queue 4 + 4 + 3 items into a 4-item queue whose exporter is stuck; return the queue,
    the SDK's count of items dropped for a full queue, and the warnings logged."""
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")  # the drop count
    reader = InMemoryMetricReader()
    exporter = BlockedExporter()
    counting = (
        {"meter_provider": MeterProvider(metric_readers=[reader])} if SDK_COUNTS_DROPS else {}
    )
    processor = BatchSpanProcessor(
        exporter,  # type: ignore[arg-type]
        max_queue_size=4,
        max_export_batch_size=4,
        schedule_delay_millis=60_000,
        **counting,  # type: ignore[arg-type]
    )
    queue = processor._batch_processor
    emit = queue_emitter(queue) if emit_with == "platform" else queue.emit
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING):
            for item in range(4):
                emit(item)
            assert exporter.entered.wait(10)  # the worker took 0-3 and is stuck exporting them
            for item in range(4, 11):
                emit(item)
        content = list(queue._queue)
    finally:
        exporter.release.set()
        processor.shutdown()
    data = reader.get_metrics_data()
    dropped = sum(
        point.value
        for rm in (data.resource_metrics if data is not None else ())
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "otel.sdk.processor.span.processed"
        for point in metric.data.data_points
        if point.attributes.get("error.type") == "queue_full"
    )
    return content, dropped, [r.getMessage() for r in caplog.records]


def test_full_queue_drops_the_oldest_and_counts_like_the_sdk_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collector down: each new item replaces the oldest, the SDK's drop metric counts every
    dropped item, and one warning says so, as with the SDK's own ``emit`` (minus its muted
    per-item "Queue full" record)."""
    mute_sdk_exporter_logs()
    sdk_content, sdk_dropped, _ = _full_queue_run("sdk", caplog, monkeypatch)
    content, dropped, warnings = _full_queue_run("platform", caplog, monkeypatch)
    assert content == sdk_content == [10, 9, 8, 7]
    assert dropped == sdk_dropped == (3 if SDK_COUNTS_DROPS else 0)
    assert sum("export queue is full" in w for w in warnings) <= 1
    assert not any("Queue full, dropping" in w for w in warnings)
