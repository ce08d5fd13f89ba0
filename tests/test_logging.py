"""Log correlation with handlers the application configured itself, before init()."""

from __future__ import annotations

import re
import textwrap

from tests.support.fixtures import run_python

APP = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    own = logging.getLogger("own")
    own.propagate = False
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(logging.Formatter("OWN %(message)s [%(otelTraceID)s]"))
    own.addHandler(h)

    import platform_otel
    platform_otel.init(service_name="logs", exporters={"traces": ["none"], "metrics": ["none"], "logs": ["none"]})
    from opentelemetry import trace
    with trace.get_tracer("t").start_as_current_span("work") as span:
        ctx = span.get_span_context()
        print(f"TRACE={ctx.trace_id:032x} SPAN={ctx.span_id:016x}")
        logging.getLogger("app").info("inside")
        own.info("custom format")
    logging.getLogger("app").info("outside")
    """
)


def test_handlers_installed_before_init_print_trace_ids() -> None:
    """basicConfig and custom handlers set up before init() print the span's ids, once, and none outside spans."""
    result = run_python(APP, {})
    assert result.rc == 0, str(result)
    trace_id, span_id = re.search(r"TRACE=(\w+) SPAN=(\w+)", result.stdout).groups()  # type: ignore[union-attr]
    lines = result.stdout.splitlines()
    inside = next(line for line in lines if line.startswith("INFO app inside"))
    assert inside == f"INFO app inside trace_id={trace_id} span_id={span_id}"
    # A format that already prints the trace id is not given a second copy.
    assert f"OWN custom format [{trace_id}]" in lines
    outside = next(line for line in lines if line.startswith("INFO app outside"))
    assert outside == "INFO app outside"
    assert "Traceback" not in result.stderr


def test_no_console_handler_is_added_when_the_app_has_one() -> None:
    """init() adds its stderr handler only when the root logger has none: no duplicate lines."""
    result = run_python(APP, {})
    assert sum(line.startswith("INFO app inside") for line in result.stdout.splitlines()) == 1
    assert "INFO" not in result.stderr


def test_bad_logging_arguments_are_the_apps_error_not_ours() -> None:
    """A log call whose arguments don't fit its format is reported by logging only; the record is still exported."""
    code = textwrap.dedent(
        """
        import logging, sys
        import platform_otel
        platform_otel.init(service_name="bad-args", log_console="never",
                           exporters={"traces": ["none"], "metrics": ["none"], "logs": ["console"]})
        logging.getLogger("app").warning("%d items", "not a number")
        platform_otel.shutdown()
        """
    )
    for log_format in ("text", "json"):
        result = run_python(code, {"PLATFORM_OTEL_LOG_FORMAT": log_format})
        assert result.rc == 0, str(result)
        assert "internal error" not in result.stderr, str(result)
        assert '"body": "%d items"' in result.stdout, str(result)


def test_copied_records_are_the_generic_copy_and_the_hook_is_removed_on_shutdown() -> None:
    """uvicorn copies every record it formats: the copy hook gives copy.copy's own result,
    leaves subclasses with their own state methods to them, and is gone after shutdown()."""
    code = textwrap.dedent(
        """
        import copy, logging
        import platform_otel
        platform_otel.init(service_name="copies", log_console="never",
                           exporters={"traces": ["none"], "metrics": ["none"], "logs": ["none"]})
        from opentelemetry import trace

        class Stateful(logging.LogRecord):
            def __getstate__(self):
                state = dict(self.__dict__)
                state["via_getstate"] = True
                return state

        with trace.get_tracer("t").start_as_current_span("work"):
            record = logging.getLogger("app").makeRecord("app", 20, "f.py", 1, "hi %s", ("x",), None)
        twin = copy.copy(record)
        assert type(twin) is logging.LogRecord and twin is not record
        assert twin.__dict__ == record.__dict__ and twin.__dict__ is not record.__dict__
        assert twin.otelTraceID == record.otelTraceID != "0"
        twin.msg = "changed"
        assert record.msg == "hi %s"  # shallow copy, own dict
        sub = Stateful("app", 20, "f.py", 1, "m", (), None)
        assert copy.copy(sub).via_getstate is True  # the subclass's own protocol still runs
        assert "__copy__" in vars(logging.LogRecord)
        platform_otel.shutdown()
        assert "__copy__" not in vars(logging.LogRecord)
        print("OK")
        """
    )
    result = run_python(code, {})
    assert result.rc == 0 and "OK" in result.stdout, str(result)
