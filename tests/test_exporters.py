"""ResilientExporter: lazy, fork-aware, one warning per outage, never raises."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from platform_otel._exporters import ResilientSpanExporter, in_export


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
    assert exporter.accepts_encoded is (signal != "metrics")
    inner = exporter._get_inner()
    try:
        options = dict(inner._channel_options)
        assert options["grpc.max_reconnect_backoff_ms"] == 5000
        assert options["grpc.initial_reconnect_backoff_ms"] <= 1000
    finally:
        inner.shutdown()
