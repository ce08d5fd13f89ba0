"""Log correlation with handlers the application configured itself, before init()."""

from __future__ import annotations

import json
import logging
import re
import sys
import textwrap
from typing import Any

import pytest

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


# --- the line a formatter wrote, with the ids in its own syntax (in-process, no init()) ---

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _line(formatter: logging.Formatter | None, msg: str = "hello", exc: bool = False) -> str:
    """What a handler with ``formatter`` prints for a record written inside a span."""
    from platform_otel.instrumentation.logging import _correlated

    handler = logging.Handler()
    handler.setFormatter(formatter)  # type: ignore[arg-type]
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("app", logging.INFO, "f.py", 1, msg, (), exc_info)
    record.trace_id, record.span_id = TRACE, SPAN
    return _correlated(handler, record, handler.format(record))


class _Json(logging.Formatter):
    def __init__(self, **dumps: Any) -> None:
        super().__init__()
        self.dumps = dumps

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": record.levelname, "msg": record.getMessage()}, **self.dumps)


class _Fixed(logging.Formatter):
    """A formatter whose every line is ``text`` (whatever the record)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def format(self, record: logging.LogRecord) -> str:
        return self.text


def test_json_lines_get_the_ids_as_their_last_fields_and_stay_valid_json() -> None:
    """Default, compact and indented json.dumps output, a trailing newline, an empty object."""
    for dumps in ({}, {"separators": (",", ":")}, {"indent": 2}):
        line = _line(_Json(**dumps))
        assert list(json.loads(line).items()) == [
            ("level", "INFO"),
            ("msg", "hello"),
            ("trace_id", TRACE),
            ("span_id", SPAN),
        ], line
    assert _line(_Json(separators=(",", ":"))) == (
        f'{{"level":"INFO","msg":"hello","trace_id":"{TRACE}","span_id":"{SPAN}"}}'
    )
    assert (
        _line(_Fixed('{"a": 1}\n')) == f'{{"a": 1, "trace_id": "{TRACE}", "span_id": "{SPAN}"}}\n'
    )
    assert json.loads(_line(_Fixed("{}"))) == {"trace_id": TRACE, "span_id": SPAN}
    # A JSON line with a trace_id field of its own gets no second one.
    own = '{"msg": "x", "trace_id": null}'
    assert _line(_Fixed(own)) == own


def test_lines_that_are_neither_text_nor_a_json_object_are_left_as_written() -> None:
    """A JSON array, a Python dict's repr, XML, JSON text sequences (RS-framed): unchanged."""
    for text in ('["hello", 1]', "{'msg': 'hello'}", "<event msg='hello'/>", '\x1e{"msg": "x"}'):
        assert _line(_Fixed(text)) == text


def test_plain_text_keeps_the_suffix_on_its_first_line() -> None:
    """Text formats (also ones starting with '[' or '{') get today's suffix, before a traceback."""
    expected = f"INFO app hello trace_id={TRACE} span_id={SPAN}"
    assert _line(logging.Formatter("%(levelname)s %(name)s %(message)s")) == expected
    assert _line(logging.Formatter("[%(levelname)s] %(message)s [x]")) == (
        f"[INFO] hello [x] trace_id={TRACE} span_id={SPAN}"
    )
    assert _line(logging.Formatter("{levelname} {message}", style="{")) == (
        f"INFO hello trace_id={TRACE} span_id={SPAN}"
    )
    lines = _line(logging.Formatter("%(message)s"), exc=True).splitlines()
    assert lines[0] == f"hello trace_id={TRACE} span_id={SPAN}"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_a_message_only_format_is_read_line_by_line() -> None:
    """``%(message)s`` (and no formatter at all) prints what the application logs: a JSON
    object message gets fields, a JSON array stays, text gets the suffix."""
    for formatter in (logging.Formatter("%(message)s"), None):
        assert json.loads(_line(formatter, '{"event": "x"}')) == {
            "event": "x",
            "trace_id": TRACE,
            "span_id": SPAN,
        }
        assert _line(formatter, "[1, 2]") == "[1, 2]"
        assert json.loads(_line(formatter, '{"a":1}')) == {
            "a": 1,
            "trace_id": TRACE,
            "span_id": SPAN,
        }
        assert _line(formatter, '{"a":1}').endswith(f',"span_id":"{SPAN}"}}')  # compact stays
        assert json.loads(_line(formatter, "{ }")) == {"trace_id": TRACE, "span_id": SPAN}
        assert _line(formatter, "{") == f"{{ trace_id={TRACE} span_id={SPAN}"
        assert _line(formatter, "plain") == f"plain trace_id={TRACE} span_id={SPAN}"
        assert _line(formatter, "{not json}") == f"{{not json}} trace_id={TRACE} span_id={SPAN}"


def test_the_kind_of_line_is_decided_once_per_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first line inside a span is parsed; later lines of that formatter are not."""
    from platform_otel.instrumentation import logging as log_integration

    parses = []
    real_loads = json.loads
    monkeypatch.setattr(
        log_integration.json, "loads", lambda s, **kw: parses.append(s) or real_loads(s, **kw)
    )
    formatter = _Json()
    for i in range(50):
        assert real_loads(_line(formatter, f"m{i}"))["trace_id"] == TRACE
    assert len(parses) == 1
    text = logging.Formatter("%(levelname)s %(message)s")
    for _ in range(50):
        _line(text)
    assert len(parses) == 1  # text starting with a letter: no parse at all
    # A formatter that writes a JSON array is left alone from then on, without parsing again.
    array = _Fixed("[1]")
    assert [_line(array) for _ in range(3)] == ["[1]"] * 3
    assert len(parses) == 2
    # "{...}" that is not JSON is judged again on the next lines, 8 lines at most.
    python_repr = _Fixed("{'msg': 'hello'}")
    assert [_line(python_repr) for _ in range(20)] == ["{'msg': 'hello'}"] * 20
    assert len(parses) == 2 + 8


def test_a_json_template_is_json_once_a_message_fits_it() -> None:
    """``'{"msg": "%(message)s"}'``: a message with a quote makes that line invalid JSON
    (left as it is); the formatter is still recognised as JSON on a later line."""
    template = logging.Formatter('{"level": "%(levelname)s", "msg": "%(message)s"}')
    assert _line(template, 'say "hi"') == '{"level": "INFO", "msg": "say "hi""}'
    assert json.loads(_line(template, "hello")) == {
        "level": "INFO",
        "msg": "hello",
        "trace_id": TRACE,
        "span_id": SPAN,
    }


def test_a_formatter_that_answers_every_attribute_is_still_judged_by_its_line() -> None:
    """A formatter whose ``__getattr__`` returns something for any name (a proxy, a mock)
    does not hand back a bogus cached decision."""

    class Answers(logging.Formatter):
        def __getattr__(self, name: str) -> Any:
            return "anything"

    line = _line(Answers("%(levelname)s %(message)s"))
    assert line == f"INFO hello trace_id={TRACE} span_id={SPAN}"
