"""The test receiver decodes what the official OTLP exporters send, over both protocols."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.support.fixtures import (
    REPO_ROOT,
    child_env,
    free_port,
)
from tests.support.otlp_receiver import OtlpReceiver

RESOURCE = Resource.create({"service.name": "receiver-test", "service.version": "9.9"})


def _exporters(receiver: OtlpReceiver) -> tuple[object, object, object]:
    if receiver.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": receiver.endpoint, "insecure": True}
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HLog
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HMet
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HSpan

    return (
        HSpan(endpoint=f"{receiver.endpoint}/v1/traces"),
        HMet(endpoint=f"{receiver.endpoint}/v1/metrics"),
        HLog(endpoint=f"{receiver.endpoint}/v1/logs"),
    )


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_receiver_decodes_official_exporters(protocol: str, request: pytest.FixtureRequest) -> None:
    """Spans, metric points and log records from the SDK exporters arrive decoded with resource and ids."""
    receiver: OtlpReceiver = request.getfixturevalue(f"otlp_{protocol}_receiver")
    span_exp, metric_exp, log_exp = _exporters(receiver)
    tp = TracerProvider(resource=RESOURCE)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))  # type: ignore[arg-type]
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=60_000)  # type: ignore[arg-type]
    mp = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    lp = LoggerProvider(resource=RESOURCE)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))  # type: ignore[arg-type]
    tracer = tp.get_tracer("t")
    with (
        tracer.start_as_current_span("parent") as parent,
        tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, attributes={"k": "v", "n": 3}
        ) as child,
    ):
        ctx = child.get_span_context()
        lp.get_logger("l").emit(
            body="hello", severity_text="INFO", severity_number=SeverityNumber.INFO
        )
    counter = mp.get_meter("m").create_counter("test.counter", unit="1")
    counter.add(5, {"a": "b"})
    mp.force_flush(5000)
    try:
        spans = receiver.wait_for(lambda r: len(r.spans()) == 2 and r.spans(), 5)
        by_name = {s.name: s for s in spans}
        assert by_name["child"].trace_id == f"{ctx.trace_id:032x}"
        assert by_name["child"].span_id == f"{ctx.span_id:016x}"
        assert by_name["child"].parent_span_id == f"{parent.get_span_context().span_id:016x}"
        assert by_name["child"].kind == "CLIENT"
        assert by_name["child"].attributes == {"k": "v", "n": 3}
        assert by_name["parent"].parent_span_id == ""
        assert by_name["child"].resource["service.name"] == "receiver-test"

        points = receiver.wait_for(
            lambda r: [p for p in r.metrics() if p.name == "test.counter"], 5
        )
        assert points[0].value == 5 and points[0].attributes == {"a": "b"}
        assert points[0].type == "sum" and points[0].is_monotonic
        assert points[0].resource["service.version"] == "9.9"

        logs = receiver.wait_for(lambda r: r.logs(), 5)
        assert logs[0].body == "hello" and logs[0].severity_number == 9
        assert logs[0].trace_id == f"{ctx.trace_id:032x}"
        assert logs[0].span_id == f"{ctx.span_id:016x}"
        assert {r.protocol for r in receiver.received} == {protocol}
    finally:
        tp.shutdown()
        mp.shutdown(5000)
        lp.shutdown()


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_receiver_restart_keeps_port_and_can_fail_on_purpose(protocol: str) -> None:
    """restart() listens on the same port again; fail_with makes exports fail; stop() refuses them."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    receiver = OtlpReceiver(protocol).start()  # type: ignore[arg-type]
    try:
        port = receiver.port
        span_exp = _exporters(receiver)[0]
        tp = TracerProvider(resource=RESOURCE)
        tracer = tp.get_tracer("t")

        def export_one(name: str) -> SpanExportResult:
            span = tracer.start_span(name)
            span.end()
            return span_exp.export([span])  # type: ignore[attr-defined,no-any-return]

        assert export_one("before") == SpanExportResult.SUCCESS
        receiver.fail_with = 400  # not retryable: the exporter gives up at once
        assert export_one("refused") == SpanExportResult.FAILURE
        receiver.fail_with = None
        receiver.restart()
        assert receiver.port == port
        assert export_one("after") == SpanExportResult.SUCCESS
        assert [s.name for s in receiver.spans()] == ["before", "after"]
    finally:
        receiver.stop()
        span_exp.shutdown()  # type: ignore[attr-defined]


@pytest.mark.integration
def test_receiver_cli_prints_json_lines() -> None:
    """`python -m tests.support.otlp_receiver --port N` prints each received span as a JSON line."""
    import json

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_receiver", "--port", str(port)],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "listening" in proc.stderr.readline()
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
        tp = TracerProvider(resource=RESOURCE)
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        tp.get_tracer("t").start_span("cli-span").end()
        tp.shutdown()
        deadline = time.monotonic() + 5
        line = proc.stdout.readline()
        assert time.monotonic() < deadline
        item = json.loads(line)
        assert item["signal"] == "span" and item["name"] == "cli-span"
        assert item["resource"]["service.name"] == "receiver-test"
    finally:
        proc.terminate()
        proc.wait(5)
