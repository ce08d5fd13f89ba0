"""Log correlation with the real logging setups of Python services, in one matrix.

Each setup (tests/integration/log_setups_app.py) is configured as applications
configure it, before ``init()``, after it, and before it in JSON mode. Each line
is parsed as its application meant it (``json.loads`` where the formatter writes
JSON, key=value or plain text otherwise) and must carry the ids of the span it
was written in; each event must reach a real OTLP receiver exactly once, with
that trace context and its key-value pairs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.documented import assert_documented
from tests.support.fixtures import child_env, otel_env
from tests.support.otlp_receiver import ExportedLog, OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

for _library in ("structlog", "loguru", "pythonjsonlogger", "uvicorn", "gunicorn"):
    pytest.importorskip(_library, reason="the matrix uses the real libraries (the dev extra)")

APP = Path(__file__).with_name("log_setups_app.py")
MODES = ("before", "after", "json")

# setup -> (file it writes, how its lines are read)
SETUPS: dict[str, tuple[str, str]] = {
    "plain": ("plain.log", "text"),
    "message_only": ("message_only.log", "text"),
    "hand_json": ("hand_json.log", "json"),
    "queue_json": ("queue_json.log", "json"),
    "python_json_logger": ("python_json_logger.log", "json"),
    "structlog_json": ("structlog_json.log", "json"),
    "structlog_console": ("structlog_console.log", "key=value"),
    "structlog_json_processor": ("structlog_json_processor.log", "json"),
    "structlog_native": ("structlog_native.log", "json"),
    # structlog.stdlib.render_to_log_kwargs: the event's pairs as the record's extra=.
    "structlog_kwargs": ("structlog_kwargs.log", "json"),
    "loguru": ("loguru.log", "loguru"),
    "loguru_intercept": ("loguru.log", "loguru"),
    "loguru_text": ("loguru_text.log", "key=value"),
    "uvicorn_default": ("uvicorn_default.log", "text"),
    "uvicorn_access": ("uvicorn_access.log", "text"),
    "gunicorn_error": ("gunicorn_error.log", "text"),
    "gunicorn_access": ("gunicorn_access.log", "text"),
    "gunicorn_access_json": ("gunicorn_access.log", "json"),
    "console": ("stderr", "text"),  # init()'s own handler: JSON in JSON mode
}
# Access loggers: a line inside a traced request repeats its server span and is not exported.
ACCESS = {"uvicorn_access", "gunicorn_access", "gunicorn_access_json"}
_SUFFIX = re.compile(
    r"(?P<text>.*) trace_id=(?P<trace_id>[0-9a-f]{32}) span_id=(?P<span_id>[0-9a-f]{16})"
)


@dataclass
class Run:
    mode: str
    ids: dict[str, str]
    out: Path
    stderr: str
    logs: list[ExportedLog]

    def lines(self, setup: str) -> tuple[str, str]:
        """(the line written inside the span, the line written after it)."""
        source = SETUPS[setup][0]
        text = (
            self.stderr if source == "stderr" else (self.out / source).read_text(encoding="utf-8")
        )
        found = []
        for where in ("inside", "outside"):
            marker = f"{setup}:{where}"
            matching = [
                line
                for line in text.splitlines()
                if re.search(rf"{re.escape(marker)}(?![a-z_])", line)
                and not (setup == "gunicorn_access" and line.startswith("{"))
            ]
            assert len(matching) == 1, f"{self.mode}: {marker!r} in {source}:\n{text}"
            found.append(matching[0])
        return found[0], found[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """The app once per mode, in parallel, each exporting to its own real OTLP receiver."""
    receivers = {mode: OtlpReceiver("grpc").start() for mode in MODES}
    procs = {}
    try:
        for mode in MODES:
            out = tmp_path_factory.mktemp(f"logs-{mode}")
            env = otel_env(receivers[mode], service_name="log-matrix")
            if mode == "json":
                env["PLATFORM_OTEL_LOG_FORMAT"] = "json"
            proc = subprocess.Popen(
                [sys.executable, str(APP), mode, str(out)],
                env=child_env(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs[mode] = (proc, out)
        result = {}
        for mode, (proc, out) in procs.items():
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"{mode}: rc={proc.returncode}\n{stdout}\n{stderr}"
            assert "internal error" not in stderr, stderr
            ids = json.loads(stdout.strip().splitlines()[-1])
            result[mode] = Run(mode, ids, out, stderr, receivers[mode].logs())
        yield result
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for receiver in receivers.values():
            receiver.stop()


def _parse(setup: str, mode: str, line: str) -> dict[str, Any]:
    """The line read as its application meant it: its fields and the ids it carries."""
    syntax = SETUPS[setup][1]
    if setup == "console" and mode == "json":
        syntax = "json"
    if syntax == "json":
        fields = json.loads(line)
        assert isinstance(fields, dict), line
        return dict(fields)
    if syntax == "loguru":
        record = json.loads(line)["record"]
        return {**record["extra"], "message": record["message"]}
    assert not line.lstrip().startswith("{"), f"{setup} writes text, not JSON: {line}"
    if setup == "loguru_text":  # its format prints the ids itself
        return dict(re.findall(r"(\w+)=(\S+)", line))
    match = _SUFFIX.fullmatch(line)
    if match is None:
        return {"text": line}
    fields = match.groupdict()
    if syntax == "key=value":
        fields.update(re.findall(r"(\w+)=(\S+)", match["text"]))
    return fields


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_each_line_is_what_the_application_meant_with_the_span_ids(
    runs: dict[str, Run], setup: str, mode: str
) -> None:
    """Inside a span the line parses in its own syntax and carries the span's ids; outside, none."""
    run = runs[mode]
    inside_line, outside_line = run.lines(setup)
    inside, outside = _parse(setup, mode, inside_line), _parse(setup, mode, outside_line)
    assert inside.get("trace_id") == run.ids["trace_id"], inside_line
    assert inside.get("span_id") == run.ids["span_id"], inside_line
    assert outside.get("trace_id", "0") == "0", outside_line
    assert outside.get("span_id", "0") == "0", outside_line
    if setup == "gunicorn_access_json":
        assert inside["status"] == 200 and inside["duration_us"] == 1500, inside_line
    elif SETUPS[setup][1] == "json" or setup in ("structlog_console", "loguru", "loguru_text"):
        assert str(inside.get("user")) == "42", inside_line  # the application's own fields stay
    if setup in ("hand_json", "queue_json", "structlog_json", "gunicorn_access_json"):
        # The formatter's fields keep their order; the ids come last.
        assert list(inside)[-2:] == ["trace_id", "span_id"], inside_line
        assert list(outside) == list(inside)[:-2], (inside_line, outside_line)
    if SETUPS[setup][1] == "text" and not (setup == "console" and mode == "json"):
        # Plain text keeps the suffix it always had, after the text its formatter wrote: the
        # same as the line outside the span but for the marker (and the clock's digits).
        written = inside["text"].replace(f"{setup}:inside", f"{setup}:outside")
        assert _digits(written) == _digits(outside_line), (inside_line, outside_line)


def _digits(line: str) -> str:
    return re.sub(r"\d", "0", line)


def _records(run: Run, marker: str) -> list[ExportedLog]:
    return [r for r in run.logs if re.search(rf"{re.escape(marker)}(?![a-z_])", str(r.body))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("setup", [s for s in SETUPS if s != "console"])
def test_each_event_reaches_the_receiver_once_with_its_trace_and_pairs(
    runs: dict[str, Run], setup: str, mode: str
) -> None:
    """OTLP: one record per event (none for an access line inside a traced request), with the
    span's trace context, its level, and the application's key-value pairs as attributes."""
    run = runs[mode]
    inside, outside = _records(run, f"{setup}:inside"), _records(run, f"{setup}:outside")
    assert len(outside) == 1, [r.body for r in outside]
    if setup in ACCESS:
        assert inside == [], "an access line inside a traced request is exported by its span"
        return
    assert len(inside) == 1, [(r.scope, r.body) for r in inside]
    record = inside[0]
    assert (record.trace_id, record.span_id) == (run.ids["trace_id"], run.ids["span_id"])
    assert outside[0].trace_id.strip("0") == ""
    assert (record.severity_number, record.severity_text) == (9, "INFO")
    assert record.attributes.get("user") == 42, record.attributes
    assert outside[0].attributes.get("user") == 7
    assert_documented(set(record.attributes) - {"user"})  # the rest is platform-otel's
    if setup.startswith(("structlog", "loguru")):
        # The event itself is the body, not the event dict's repr or a rendered line.
        assert record.body == f"{setup}:inside", record.body
    if setup == "structlog_native":
        assert record.scope == "structlog"
    if setup == "loguru":
        assert record.scope == "__main__"
        assert record.attributes["code.function.name"] == "<lambda>"


THREADS_APP = """
import structlog, sys
from loguru import logger
import platform_otel
from platform_otel.logs import loguru_patcher, loguru_sink, structlog_processor

platform_otel.init(service_name="log-threads", log_console="never")
logger.remove()
logger.configure(patcher=loguru_patcher)
logger.add(loguru_sink, enqueue=True)  # the sink runs on loguru's own thread
log = structlog.wrap_logger(
    structlog.PrintLogger(sys.stdout),
    processors=[structlog.processors.add_log_level, structlog_processor,
                structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
)
from opentelemetry import trace
with trace.get_tracer("t").start_as_current_span("work") as span:
    ctx = span.get_span_context()
    logger.bind(order=7, timestamp="t1").warning("queued")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed", order=8)
        logger.exception("loguru failed")
logger.complete()
platform_otel.shutdown()
print(f"IDS {ctx.trace_id:032x} {ctx.span_id:016x}")
"""


APP_KEYS = {"order", "timestamp"}  # THREADS_APP's own key-value pairs


def test_enqueued_loguru_sink_and_structlog_exceptions_keep_their_trace(
    otlp_grpc_receiver: OtlpReceiver, run_python: Any
) -> None:
    """A loguru sink on loguru's thread (enqueue=True) exports the record with the trace it
    was written in; structlog's and loguru's exception() export exception.* and the pairs."""
    result = run_python(THREADS_APP, otel_env(otlp_grpc_receiver), timeout=30)
    assert result.rc == 0 and "internal error" not in result.stderr, str(result)
    trace_id, span_id = result.stdout.split("IDS ")[1].split()
    (queued,) = [r for r in otlp_grpc_receiver.logs() if r.body == "queued"]
    assert (queued.trace_id, queued.span_id) == (trace_id, span_id)
    assert (queued.severity_text, queued.attributes["order"]) == ("WARN", 7)
    assert queued.attributes["timestamp"] == "t1"  # extra is the application's: no reserved keys
    (failed,) = [r for r in otlp_grpc_receiver.logs() if r.body == "failed"]
    assert (failed.trace_id, failed.severity_text) == (trace_id, "ERROR")
    assert failed.attributes["exception.type"] == "ZeroDivisionError"
    assert "1 / 0" in failed.attributes["exception.stacktrace"]
    assert failed.attributes["order"] == 8
    (loguru_failed,) = [r for r in otlp_grpc_receiver.logs() if r.body == "loguru failed"]
    assert (loguru_failed.trace_id, loguru_failed.severity_text) == (trace_id, "ERROR")
    assert loguru_failed.attributes["exception.type"] == "ZeroDivisionError"
    assert loguru_failed.attributes["exception.message"] == "division by zero"
    assert_documented(
        {*failed.attributes, *loguru_failed.attributes, *queued.attributes} - APP_KEYS
    )
    line = json.loads(next(x for x in result.stdout.splitlines() if '"failed"' in x))
    assert line["trace_id"] == trace_id and "ZeroDivisionError" in line["exception"]


def test_importing_the_public_log_module_imports_neither_library(run_python: Any) -> None:
    """structlog and loguru stay optional: platform_otel.logs imports neither."""
    code = (
        "import sys, platform_otel, platform_otel.logs\n"
        "print(sorted(m for m in ('structlog', 'loguru') if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.rc == 0 and result.stdout.strip() == "[]", str(result)
