"""Failures users report against other OpenTelemetry setups, shown absent here.

Each test reproduces one line of the known-failures list that no other test
file covers; docs/known-failures.md maps every line to the test(s) that prove
platform-otel does not have it. In-process tests pass explicit in-memory
providers; tests that need ``init()`` run it in a subprocess against a real
OTLP receiver.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from platform_otel._config import load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import fastapi as pf
from tests.support.documented import assert_documented
from tests.support.fixtures import (
    child_env,
    free_port,
    http_get,
    otel_env,
    run_python,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver

# instrumentation/__init__.py imports the stdlib ``logging``, which shadows the submodule name
pl = importlib.import_module("platform_otel.instrumentation.logging")

pytestmark = pytest.mark.timeout(60)

NO_EXPORT = {
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


class Providers:
    """In-memory tracer, meter and logger providers, and the logging integration installed on them."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider(shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        from platform_otel._config import InitOptions

        settings = load_settings(
            {},
            InitOptions(
                service_name="known-failures",
                capture_content=False,
                environment="test",
                fastapi_impl="lean",
                log_format="text",
                log_console="never",
                log_level="info",
            ),
        )
        self.ctx = InstrumentationContext(
            settings=settings,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            logger_provider=self.logger_provider,
        )

    def records(self, body: str) -> list[Any]:
        """Exported OTLP log records whose body is ``body``."""
        return [r.log_record for r in self.logs.get_finished_logs() if r.log_record.body == body]

    def metric_attributes(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(instrumentation scope, attributes) of each series of metric ``name``."""
        data = self.reader.get_metrics_data()
        return [
            (sm.scope.name, dict(p.attributes or {}))
            for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]


@pytest.fixture
def providers() -> Iterator[Providers]:
    """Providers with the logging integration installed (uninstalled afterwards)."""
    p = Providers()
    assert pl.instrument(p.ctx) is None
    try:
        yield p
    finally:
        pl.uninstrument()
        pf.uninstrument()


RECORD_END = "\x1e\n"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """What a plain StreamHandler on the ``kf`` logger prints."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.terminator = RECORD_END  # a record with a traceback spans several lines
    lg = logging.getLogger("kf")
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        lg.removeHandler(handler)
        lg.setLevel(logging.NOTSET)


# --------------------------------------------------------------------------- log correlation

TRACE_IDS = {
    "/refuse": "11111111111111111111111111111111",
    "/crash": "22222222222222222222222222222222",
    "/caught": "33333333333333333333333333333333",
}


def test_exception_handler_and_logger_exception_logs_keep_the_request_trace(
    providers: Providers, log_stream: io.StringIO
) -> None:
    """Logs from FastAPI exception handlers and logger.exception in a route carry their request's trace and server span."""
    assert pf.instrument(providers.ctx) is None
    log = logging.getLogger("kf.web")
    app = FastAPI()

    class Refused(Exception):
        pass

    @app.exception_handler(Refused)
    async def on_refused(request: Request, exc: Refused) -> JSONResponse:
        log.warning("handler for refused")
        return JSONResponse({"error": "refused"}, status_code=409)

    @app.exception_handler(Exception)  # runs in Starlette's outermost ServerErrorMiddleware
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("handler for crash")
        return JSONResponse({"error": "internal"}, status_code=500)

    @app.get("/refuse")
    async def refuse() -> None:
        raise Refused()

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/caught")
    async def swallowed() -> dict[str, bool]:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("caught in route")
        return {"ok": False}

    with TestClient(app, raise_server_exceptions=False) as client:
        for path, trace_id in TRACE_IDS.items():
            client.get(path, headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})

    servers = {
        format(s.context.trace_id, "032x"): s
        for s in providers.spans.get_finished_spans()
        if s.kind is SpanKind.SERVER
    }
    assert set(servers) == set(TRACE_IDS.values()), servers
    printed = log_stream.getvalue().split(RECORD_END)
    for body, path in (
        ("handler for refused", "/refuse"),
        ("handler for crash", "/crash"),
        ("caught in route", "/caught"),
    ):
        server = servers[TRACE_IDS[path]]
        (record,) = providers.records(body)
        assert format(record.trace_id, "032x") == TRACE_IDS[path], body
        assert record.span_id == server.context.span_id, body
        (text,) = [t for t in printed if body in t]
        assert f"trace_id={TRACE_IDS[path]} span_id={server.context.span_id:016x}" in text, text
    (caught,) = providers.records("caught in route")
    assert caught.attributes["exception.type"] == "ZeroDivisionError"


def test_handlers_on_root_and_named_logger_export_one_record(providers: Providers) -> None:
    """A handler on root and another on a named logger print the line twice (the app's choice) but export it once."""
    root_out, named_out, access_out = io.StringIO(), io.StringIO(), io.StringIO()
    root, named = logging.getLogger(), logging.getLogger("kf.dup")
    access = logging.getLogger("kf.access")  # like uvicorn.access: its own handler, no propagation
    handlers = [
        (root, logging.StreamHandler(root_out)),
        (named, logging.StreamHandler(named_out)),
        (access, logging.StreamHandler(access_out)),
    ]
    for lg, h in handlers:
        lg.addHandler(h)
    named.setLevel(logging.INFO)
    access.setLevel(logging.INFO)
    access.propagate = False
    try:
        named.warning("written through two handlers")
        access.info("written by a non-propagating logger")
    finally:
        for lg, h in handlers:
            lg.removeHandler(h)
        named.setLevel(logging.NOTSET)
        access.setLevel(logging.NOTSET)
        access.propagate = True
    assert "written through two handlers" in root_out.getvalue()
    assert "written through two handlers" in named_out.getvalue()
    assert "written by a non-propagating logger" in access_out.getvalue()
    assert len(providers.records("written through two handlers")) == 1
    assert len(providers.records("written by a non-propagating logger")) == 1


UNHANDLED_APP = """
import platform_otel
platform_otel.init(service_name="web")
from fastapi import FastAPI

app = FastAPI()


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")
"""
UNHANDLED_TRACE = "44444444444444444444444444444444"


def test_uvicorn_unhandled_exception_log_carries_the_request_trace(tmp_path: Path) -> None:
    """Under real uvicorn, the 'Exception in ASGI application' error log of a failing request shows its trace id."""
    (tmp_path / "boom_app.py").write_text(UNHANDLED_APP, encoding="utf-8")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "boom_app:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--app-dir", str(tmp_path)]
    with start_process(
        argv, {**otel_env(None, service_name="web"), **NO_EXPORT}, cwd=tmp_path
    ) as server:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        headers = {"traceparent": f"00-{UNHANDLED_TRACE}-b7ad6b7169203331-01"}
        status, _ = http_get(f"http://127.0.0.1:{port}/boom", headers=headers)
        assert status == 500
        time.sleep(0.3)
        server.stop()
    text = server.output
    start = text.find("Exception in ASGI application")
    assert start >= 0, str(server)
    record = text[start : text.find("RuntimeError: boom", start) + 200]
    assert f"trace_id={UNHANDLED_TRACE}" in record, str(server)


HANDLERS_FIRST_APP = """
import logging, logging.config, sys
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s %(message)s", level=logging.INFO)
import platform_otel
platform_otel.init(service_name="handlers-first")
logging.basicConfig(format="ignored %(message)s")  # a no-op: root already has a handler
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "LATE %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"}},
    "loggers": {"late": {"handlers": ["out"], "propagate": False, "level": "INFO"}},
})
from opentelemetry import trace
with trace.get_tracer("app").start_as_current_span("work") as span:
    c = span.get_span_context()
    logging.getLogger("early").info("from the basicConfig handler")
    logging.getLogger("late").info("from the dictConfig handler")
print(f"IDS trace_id={c.trace_id:032x} span_id={c.span_id:016x}")
"""


def test_basicconfig_before_and_dictconfig_after_init_print_trace_ids() -> None:
    """basicConfig before init() and dictConfig after it: both handlers' lines show trace_id/span_id, once each."""
    result = run_python(
        HANDLERS_FIRST_APP, {**otel_env(None, service_name="handlers-first"), **NO_EXPORT}
    )
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    ids = re.search(r"IDS (trace_id=\w+ span_id=\w+)", result.stdout)
    assert ids and "trace_id=0000" not in ids.group(1), str(result)
    for body in ("from the basicConfig handler", "from the dictConfig handler"):
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if body in ln]
        assert len(lines) == 1, f"{body!r} printed {len(lines)} times:\n{result}"
        assert lines[0].endswith(ids.group(1)), str(result)
    assert any(ln.startswith("INFO early from") for ln in result.stdout.splitlines()), str(result)
    assert any(ln.startswith("LATE from") for ln in result.stdout.splitlines()), str(result)


# --------------------------------------------------------------------------- init + opentelemetry-instrument

BOTH_APP = """
import logging
import platform_otel
telemetry = platform_otel.init(service_name="both")
from opentelemetry import trace
with trace.get_tracer("app").start_as_current_span("span-once"):
    logging.getLogger("app").warning("log once")
print("OWNS", telemetry.owns_providers, flush=True)
"""


@pytest.fixture(scope="module", params=["default", "sdk-logging-handler"])
def under_instrument(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.CompletedProcess[str], OtlpReceiver]]:
    """BOTH_APP run by `opentelemetry-instrument` (opentelemetry-distro), exporting to a real receiver.

    ``default``: the logging instrumentation's handler on root; ``sdk-logging-handler``:
    OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true, the SDK's own handler on root.
    """
    script = tmp_path_factory.mktemp("both") / "both_app.py"
    script.write_text(BOTH_APP, encoding="utf-8")
    receiver = OtlpReceiver("grpc").start()
    try:
        env = otel_env(receiver, service_name="both")
        env["OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"] = str(
            request.param != "default"
        ).lower()
        launcher = Path(sys.executable).parent / "opentelemetry-instrument"
        proc = subprocess.run(
            [str(launcher), sys.executable, str(script)],
            env=child_env(env),
            capture_output=True,
            text=True,
            timeout=40,
        )
        out = f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, out
        assert "OWNS False" in proc.stdout, out  # the distro's providers were reused, not replaced
        receiver.wait_for(lambda r: r.spans() and r.logs(), 10)
        time.sleep(0.5)  # let any duplicate arrive
        yield proc, receiver
    finally:
        receiver.stop()


def test_init_under_opentelemetry_instrument_exports_spans_once(
    under_instrument: tuple[subprocess.CompletedProcess[str], OtlpReceiver],
) -> None:
    """init() inside `opentelemetry-instrument` reuses its providers and adds no processor: each span arrives once."""
    _, receiver = under_instrument
    assert [s.name for s in receiver.spans()].count("span-once") == 1, receiver.summary()


def test_init_under_opentelemetry_instrument_exports_log_records_once(
    under_instrument: tuple[subprocess.CompletedProcess[str], OtlpReceiver],
) -> None:
    """init() inside `opentelemetry-instrument`: a log call arrives once, though its LoggingHandler sits on root."""
    _, receiver = under_instrument
    assert [lg.body for lg in receiver.logs()].count("log once") == 1, receiver.summary()
    # The SDK's handler exports every record attribute: platform-otel adds only the documented
    # correlation ids (its span context kept on the record made SDK 1.40 recurse forever).
    [record] = [lg for lg in receiver.logs() if lg.body == "log once"]
    assert not [k for k in record.attributes if k.startswith("_")], record.attributes


# --------------------------------------------------------------------------- metrics backends

NONE_APP = """
import logging
import platform_otel
platform_otel.init(service_name="none-values")
from opentelemetry import trace
log = logging.getLogger("app")
pipe = platform_otel.pipeline("none-values")
pipe.observe_queue("inbox", depth=lambda: None)
with pipe.stage("convert", item_id=None, enqueued_at=None) as run:
    run.set_attribute("doc.owner", None)
    run.set_attribute("doc.tags", ["a", None])
    run.set_outcome(None)
    log.warning("extras with None", extra={"user_id": None, "tenant": "t1"})
with pipe.stage("store", item_id="doc-1"):
    pass
print("APP_DONE", flush=True)
"""


def test_none_attribute_values_do_not_break_export(otlp_grpc_receiver: OtlpReceiver) -> None:
    """None as stage item id/attribute/outcome, queue depth or log extra: everything still arrives, Nones left out."""
    env = otel_env(otlp_grpc_receiver, service_name="none-values", PLATFORM_OTEL_RAISE_INTERNAL="1")
    result = run_python(NONE_APP, env, timeout=30)
    assert result.rc == 0 and "APP_DONE" in result.stdout, str(result)
    for symptom in ("Traceback", "Invalid type", "cannot export", "internal error"):
        assert symptom not in result.stderr, str(result)
    r = otlp_grpc_receiver
    r.wait_for(lambda r: len(r.spans()) >= 2 and r.logs(), 10)
    r.wait_for(
        lambda r: (
            {"convert", "store"}
            <= {p.attributes.get("stage") for p in r.metrics() if p.name == "pipeline.items"}
        ),
        10,
    )
    spans = {s.name: s for s in r.spans()}
    convert = spans["none-values convert"].attributes
    assert "pipeline.item.id" not in convert and "doc.owner" not in convert, convert
    assert spans["none-values store"].attributes["pipeline.item.id"] == "doc-1"
    (record,) = [lg for lg in r.logs() if lg.body == "extras with None"]
    assert record.attributes["tenant"] == "t1" and "user_id" not in record.attributes
    items = [p for p in r.metrics() if p.name == "pipeline.items"]
    for point in items:
        assert all(isinstance(v, str) for v in point.attributes.values()), point
    assert not [p for p in r.metrics() if p.name == "pipeline.queue.depth"]


def test_http_client_metrics_carry_no_urls(
    providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx and requests calls to many URLs (ids, query strings) add one duration series per server, no URL attribute."""
    import httpx
    import requests
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )

    from platform_otel.instrumentation import httpx as phttpx
    from platform_otel.instrumentation import requests as prequests

    # Contrib instrumentors read the semconv choice once per process: see the one
    # init() makes them see when unset ("http"), whatever earlier tests chose.
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setattr(Stability, "_initialized", False)

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert phttpx.instrument(providers.ctx) is None
        assert prequests.instrument(providers.ctx) is None
        with httpx.Client() as client:
            for n in range(5):
                assert client.get(f"{base}/users/{n}?token=t{n}").status_code == 200
        with requests.Session() as session:
            for n in range(5):
                assert session.get(f"{base}/orders/{n}?q={n}").status_code == 200
    finally:
        phttpx.uninstrument()
        prequests.uninstrument()
        server.shutdown()
        server.server_close()
        Stability._initialized = False
    series = providers.metric_attributes("http.client.request.duration")
    scopes = sorted(scope for scope, _ in series)
    # five URLs per library, one server, one method, one status: one series per library
    assert scopes == sorted({scope for scope, _ in series}) and len(scopes) == 2, series
    for _, attributes in series:
        assert not set(attributes) & {
            "url.full",
            "url.path",
            "url.query",
            "http.url",
            "http.target",
        }, series
        assert not any(
            re.search(r"/users/|/orders/|token=|q=", str(v)) for v in attributes.values()
        ), series
    assert_documented({key for _, a in series for key in a} | {"http.client.request.duration"})


PROM_APP = """
import os, sys, time
import platform_otel
platform_otel.init(service_name=sys.argv[1], prometheus_port=int(os.environ["PROM_PORT"]))
from opentelemetry import metrics
metrics.get_meter("app").create_counter("app.hits").add(1, {"worker": sys.argv[1]})
print("RUNNING", sys.argv[1], flush=True)
if sys.argv[1] == "first":
    time.sleep(60)
"""


def test_second_process_on_the_prometheus_port_warns_once_and_runs(tmp_path: Path) -> None:
    """A second worker with the same Prometheus port gets one warning and keeps running; the first keeps serving."""
    port = free_port()
    script = tmp_path / "prom_app.py"
    script.write_text(PROM_APP, encoding="utf-8")
    env = {
        **otel_env(None, service_name="prom"),
        **NO_EXPORT,
        "PROM_PORT": str(port),
        "PLATFORM_OTEL_PROMETHEUS_HOST": "127.0.0.1",
    }
    url = f"http://127.0.0.1:{port}/metrics"
    with start_process([sys.executable, str(script), "first"], env) as first:
        wait_http(url, first)
        second = run_python(PROM_APP, env, args=["second"], timeout=30)
        status, body = http_get(url)
        assert first.proc.poll() is None, str(first)
    assert second.rc == 0 and "RUNNING second" in second.stdout, str(second)
    assert "Traceback" not in second.stderr, str(second)
    warnings = [ln for ln in second.stderr.splitlines() if str(port) in ln]
    assert len(warnings) == 1 and "prometheus" in warnings[0].lower(), str(second)
    assert status == 200
    assert re.search(r'app_hits_total\{.*worker="first"', body), body
    assert 'worker="second"' not in body


EXEMPLAR_APP = """
import platform_otel
platform_otel.init(service_name="exemplars")
from opentelemetry import trace
pipe = platform_otel.pipeline("exemplars")
with trace.get_tracer("app").start_as_current_span("request"):
    with pipe.stage("convert") as run:
        c = run.span.get_span_context()
print(f"IDS {c.trace_id:032x} {c.span_id:016x}", flush=True)
"""


def test_histogram_exemplars_reach_otlp_with_the_stage_span(
    otlp_grpc_receiver: OtlpReceiver,
) -> None:
    """With init() defaults, the stage duration histogram arrives over OTLP with an exemplar naming its span."""
    result = run_python(
        EXEMPLAR_APP, otel_env(otlp_grpc_receiver, service_name="exemplars"), timeout=30
    )
    assert result.rc == 0, str(result)
    ids = re.search(r"IDS (\w+) (\w+)", result.stdout)
    assert ids, str(result)
    trace_id, span_id = ids.groups()
    points = otlp_grpc_receiver.wait_for(
        lambda r: [p for p in r.metrics() if p.name == "pipeline.stage.duration" and p.exemplars],
        10,
    )
    exemplars = points[-1].exemplars
    assert [(e["trace_id"], e["span_id"]) for e in exemplars] == [(trace_id, span_id)], exemplars


QUEUE_FULL_APP = """
import logging
import platform_otel
from opentelemetry import trace

platform_otel.init()
sdk_records = []
factory = logging.getLogRecordFactory()

def counting_factory(*args, **kwargs):
    record = factory(*args, **kwargs)
    if record.name.startswith("opentelemetry.sdk"):
        sdk_records.append(record.getMessage())
    return record

logging.setLogRecordFactory(counting_factory)
tracer = trace.get_tracer("queue-full")
for _ in range(500):  # a lean-path span would take the same queue
    with tracer.start_as_current_span("work"):
        pass
print("SDK_RECORDS", len(sdk_records), flush=True)
"""


def test_full_export_queue_warns_once_without_a_log_record_per_dropped_span() -> None:
    """Collector down: the SDK's "Queue full, dropping Span." is not built per span (it cost
    ~7 % of a web worker's throughput during an outage); one platform-otel warning says it."""
    env = otel_env(
        service_name="queue-full",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens
        OTEL_BSP_MAX_QUEUE_SIZE="16",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="16",
        OTEL_BSP_SCHEDULE_DELAY="60000",
        PLATFORM_OTEL_SHUTDOWN_TIMEOUT="1",
    )
    result = run_python(QUEUE_FULL_APP, env, timeout=60)
    assert result.rc == 0, str(result)
    if not os.environ.get("PLATFORM_OTEL_LOWEST"):
        # The fast path's queue hand-off builds no record per dropped span. (On the SDK path,
        # where the fast path is off, the SDK builds them and a filter keeps the first one.)
        assert "SDK_RECORDS 0" in result.stdout, str(result)
    assert result.stderr.count("export queue is full") == 1, str(result)
    assert "Queue full, dropping" not in result.stderr, str(result)


def test_gpu_rows_cite_tests_that_exist() -> None:
    """The GPU rows of docs/known-failures.md name tests pytest collects (none says "planned")."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "known-failures.md").read_text(
        encoding="utf-8"
    )
    section = doc.split("\n## GPU\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 3 and not any("planned" in row for row in rows), rows
    cited = [re.findall(r"`(tests/[^`]+::[^`]+)`", row.rsplit("|", 2)[1]) for row in rows]
    assert all(cited), rows
    files = sorted({node.split("::")[0] for ids in cited for node in ids})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.splitlines()
    missing = [node for ids in cited for node in ids if node not in collected]
    assert not missing, missing


# --------------------------------------------------------------------------- LLM calls (Ollama)

AIRGAP_APP = """
import sys, time
import ollama
import platform_otel
started = time.monotonic()
platform_otel.init(service_name="airgap")
print(f"INIT {time.monotonic() - started:.3f}", flush=True)
time.sleep(0.5)  # a poller started by init() would have called the server by now
print("CALLING", flush=True)
ollama.Client(host=sys.argv[1]).generate(model="tiny", prompt="x")
time.sleep(0.5)
"""


def test_init_makes_no_call_to_ollama_until_the_app_does() -> None:
    """init() with ollama installed and imported makes no network call; the /api/ps
    poller starts with the application's first call, to the server that call used."""
    from platform_otel._ollama_sim import SimulatedOllama

    with SimulatedOllama(latency_s=0.0, chunks=1, load_s=0.0) as sim:
        seen: list[int] = []
        env = otel_env(service_name="airgap", PLATFORM_OTEL_OLLAMA_PS_INTERVAL="0.2", **NO_EXPORT)
        proc = subprocess.Popen(
            [sys.executable, "-c", AIRGAP_APP, sim.url],
            env=child_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        init_line = proc.stdout.readline()
        assert proc.stdout.readline().strip() == "CALLING"
        seen.append(sim.requests)
        _out, err = proc.communicate(timeout=30)
        seen.append(sim.requests)
    assert proc.returncode == 0, err
    assert float(init_line.split()[1]) < 1.0, init_line
    assert seen[0] == 0, "init() called the Ollama server before the application did"
    assert seen[1] >= 2, "the application's call and at least one /api/ps poll"


def test_time_to_first_chunk_is_a_client_metric_and_server_timings_are_ollama_names() -> None:
    """A streamed call records the client-side time to first chunk under the gen_ai.client
    name; Ollama's own server timings go under ollama.*, never under gen_ai.server.*."""
    import ollama

    from platform_otel._ollama_sim import SimulatedOllama
    from tests.support.genai_otel import Otel

    with SimulatedOllama(latency_s=0.02, chunks=3, load_s=0.0) as sim, Otel() as otel:
        chunks = list(ollama.Client(host=sim.url).generate(model="tiny", prompt="x", stream=True))
        names = set(otel.metrics())
        (span,) = otel.spans()
    assert "gen_ai.client.operation.time_to_first_chunk" in names
    assert not [n for n in names if n.startswith("gen_ai.server.")], names
    assert {"ollama.prefill.duration", "ollama.decode.duration"} <= names
    ttfc = dict(span.attributes or {})["gen_ai.response.time_to_first_chunk"]
    # client-side: from the request to the first chunk, more than the server's prefill alone
    assert ttfc >= chunks[-1].prompt_eval_duration / 1e9


def test_ollama_metric_model_names_are_capped() -> None:
    """Model names are the only free-form metric attribute of LLM calls: after 100 distinct
    names, metrics say _OTHER (spans keep the real name)."""
    import ollama

    from platform_otel._ollama_sim import SimulatedOllama
    from platform_otel.instrumentation import ollama as po
    from tests.support.genai_otel import Otel

    with SimulatedOllama(latency_s=0.0, chunks=1, load_s=0.0) as sim, Otel() as otel:
        state = po._state
        assert state is not None
        for n in range(100):
            assert state.bounded_model(f"user-typo-{n}") == f"user-typo-{n}"
        client = ollama.Client(host=sim.url)
        client.generate(model="tiny", prompt="x")
        (span,) = otel.spans()
        (point,) = otel.points(po.OPERATION_DURATION)
    assert dict(span.attributes or {})["gen_ai.request.model"] == "tiny"
    assert point.attributes["gen_ai.request.model"] == "_OTHER"


def test_every_ollama_known_failure_names_existing_tests() -> None:
    """Each row of the "LLM calls (Ollama)" table in docs/known-failures.md names at least
    one test, and each named test exists."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "known-failures.md").read_text()
    section = doc.split("## LLM calls (Ollama)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    rows = rows[1:]  # the header
    assert len(rows) >= 7, rows
    root = Path(__file__).resolve().parents[1]
    for row in rows:
        ids = re.findall(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]]*\])?`", row)
        assert ids, f"no test named in: {row}"
        for path, name in ids:
            source = (root / path).read_text()
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} missing"
