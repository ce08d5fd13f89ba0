"""Log correlation: every stdlib log record carries the trace it was written in.

Four small patches of the ``logging`` module, each reversible:

1. A **record factory** stamps ``trace_id``/``span_id`` (and the official
   instrumentation's ``otelTraceID``/``otelSpanID``/``otelTraceSampled``/
   ``otelServiceName``, plus ``service_name``) on each record *when it is
   created*, i.e. in the thread and context of the code that logs.
2. ``Handler.format`` is wrapped so **every handler prints the ids**, including
   handlers installed before ``init()`` or later by uvicorn/gunicorn's
   ``dictConfig`` (which is why ``basicConfig``-style setups lose them). Inside a
   span, a plain text line gets `` trace_id=… span_id=…`` appended, a JSON-object
   line gets ``trace_id``/``span_id`` fields, and a line that is neither is left
   as it is. What a formatter writes is decided once per formatter, from its first
   line written inside a span (:func:`_line_kind`), never by parsing every line.
   JSON mode changes only the console handler ``init()`` itself adds.
3. ``Logger.callHandlers`` is wrapped to **export each record once over OTLP**,
   whatever the logger's ``propagate`` flag or handler layout (uvicorn's access
   logger does not propagate to root). Records written while an exporter runs,
   and the SDK's and our own logs, are never exported: no feedback loop.
4. ``LogRecord.__copy__`` copies a plain record in one step, with ``copy.copy``'s
   exact result: uvicorn's formatters copy every record twice, and the generic
   reduce path made the fields added in (1) costly (docs/performance.md).
"""

from __future__ import annotations

import copy
import copyreg
import json
import logging
import sys
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from .. import _fast
from .._exporters import in_export
from .._fast.context import SPAN_KEY, current_var
from .._safety import report_internal_error

if TYPE_CHECKING:
    from . import InstrumentationContext

__all__ = ["EXCEPTION_SPAN_ATTR", "LIBRARY", "instrument", "uninstrument"]

LIBRARY = "logging"

#: Attribute under which server middleware stores the request span's SpanContext on an
#: exception that escapes it, so a later log of that exception keeps the request's trace.
EXCEPTION_SPAN_ATTR = "_platform_otel_span_context"

_INVALID_TRACE = "0"
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "trace_id",
    "span_id",
    "trace_sampled",
    "service_name",
    "otelTraceID",
    "otelSpanID",
    "otelTraceSampled",
    "otelServiceName",
    "color_message",  # uvicorn's colourised duplicate of the message
    "_platform_otel_context",
    "_otel_span_context",
}
_SKIP_EXPORT_PREFIXES = ("opentelemetry", "platform_otel")
_MAX_EXTRA_ATTRIBUTES = 32
_MAX_LOGGERS = 1024
_SEVERITY = {
    logging.DEBUG: 5,
    logging.INFO: 9,
    logging.WARNING: 13,
    logging.ERROR: 17,
    logging.CRITICAL: 21,
}
# The SpanContext each record was created in. Kept beside the record, not in its
# __dict__: OpenTelemetry's own LoggingHandler (opentelemetry-instrument with logging
# auto-instrumentation) exports every record attribute, and a SpanContext there became a
# bogus array attribute (SDK 1.45) or, through the SDK's warning about it, infinite
# recursion (SDK 1.40).
_contexts: weakref.WeakKeyDictionary[logging.LogRecord, Any] = weakref.WeakKeyDictionary()
# Records of exceptions that escaped a request span: that span's context (EXCEPTION_SPAN_ATTR).
_tagged: weakref.WeakKeyDictionary[logging.LogRecord, Any] = weakref.WeakKeyDictionary()
# Servers' access loggers: one line per request, the same facts as the request's server span.
_ACCESS_LOGGERS = frozenset({"uvicorn.access", "gunicorn.access", "hypercorn.access"})
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class _State:
    installed = False
    service_name = "unknown_service"
    json_mode = False
    export_access = False
    logger_provider: Any = None
    lean: Any = None  # _fast.logs.LeanLogEmitter when the fast path is on
    severities: dict[int, SeverityNumber] = {}
    otel_loggers: dict[str, Any] = {}
    old_factory: Any = None
    old_format: Any = None
    old_call_handlers: Any = None
    console_handler: logging.Handler | None = None
    old_root_level: int | None = None
    # Set by platform_otel.logs.instrument_loguru: call_handlers then notes the record it is
    # handling, so a stdlib record forwarded into loguru (an InterceptHandler) is exported
    # once, here, and not again by the loguru sink.
    watch_handlers = False


class _Handling(threading.local):
    record: logging.LogRecord | None = None


_state = _State()
_handling = _Handling()


def _install_factory() -> None:
    old = logging.getLogRecordFactory()
    _state.old_factory = old
    # What trace.get_current_span() does, without its ABC isinstance check, the API's
    # frames around the ContextVar and the five property calls on the SpanContext: this
    # runs for every log record of the process.
    var = current_var()
    get_current = var.get if var is not None else otel_context.get_current
    span_key = SPAN_KEY
    invalid_context = trace.INVALID_SPAN_CONTEXT

    service = _state.service_name
    outside = {  # the fields of a record written outside any span
        "trace_id": _INVALID_TRACE,
        "otelTraceID": _INVALID_TRACE,
        "span_id": _INVALID_TRACE,
        "otelSpanID": _INVALID_TRACE,
        "trace_sampled": False,
        "otelTraceSampled": False,
        "service_name": service,
        "otelServiceName": service,
    }

    def factory(
        name: str,
        level: int,
        fn: str,
        lno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> logging.LogRecord:
        # Named parameters: Logger.makeRecord passes these positionally, and a call with
        # fixed arguments is cheaper than repacking *args/**kwargs for every record.
        record = old(name, level, fn, lno, msg, args, exc_info, func, sinfo, **kwargs)
        try:
            span: Any = get_current().get(span_key)
            ctx = invalid_context if span is None else span.get_span_context()
            # A SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state,
            # is_valid).
            if not ctx[5] and record.exc_info:
                # Servers log unhandled errors after the request's span has ended (uvicorn's
                # "Exception in ASGI application"); our middleware tagged the exception with it.
                tagged = getattr(record.exc_info[1], EXCEPTION_SPAN_ATTR, None)
                if tagged is not None:
                    ctx = tagged
                    _tagged[record] = tagged
            # The record's attribute dict is rebuilt in one step instead of taking nine
            # stores: past ~21 keys a dict is resized and its key table leaves the small-
            # object allocator, and stores one at a time paid that several times per record
            # (docs/performance.md, "Log records and span end").
            if ctx[5]:
                # printf-style: the cheapest int-to-hex here (about half of format()'s cost).
                trace_id = "%032x" % ctx[0]  # noqa: UP031
                span_id = "%016x" % ctx[1]  # noqa: UP031
                sampled = bool(ctx[3] & 1)
                record.__dict__ = {
                    **record.__dict__,
                    "trace_id": trace_id,
                    "otelTraceID": trace_id,
                    "span_id": span_id,
                    "otelSpanID": span_id,
                    "trace_sampled": sampled,
                    "otelTraceSampled": sampled,
                    "service_name": service,
                    "otelServiceName": service,
                }
            else:
                record.__dict__ = {**record.__dict__, **outside}
            _contexts[record] = ctx
        except Exception:
            report_internal_error("log record factory")
        return record

    factory._platform_otel = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _copy_record(self: logging.LogRecord) -> logging.LogRecord:
    """``copy.copy`` of a log record in one step, with the generic path's exact result.

    uvicorn's formatters copy every record they format (twice for an access line), and
    ``copy.copy`` without ``__copy__`` goes through ``__reduce_ex__`` and
    ``copy._reconstruct`` in Python; with the ids this module adds, that was most of what
    log correlation cost per access line. For a plain ``LogRecord`` (no copy hook
    registered in ``copyreg``) the result is the same: a new instance whose ``__dict__``
    is a shallow copy. Subclasses, which may define their own reduce or state methods,
    take the generic path unchanged.
    """
    cls = type(self)
    if cls is logging.LogRecord and cls not in copyreg.dispatch_table:
        new = cls.__new__(cls)
        new.__dict__.update(self.__dict__)
        return new
    copied: logging.LogRecord = _generic_copy(self)
    return copied


def _generic_copy(record: Any) -> Any:
    """What ``copy.copy`` does for an object without ``__copy__``."""
    reductor = copyreg.dispatch_table.get(type(record))
    rv = reductor(record) if reductor is not None else record.__reduce_ex__(4)
    if isinstance(rv, str):
        return record
    return copy._reconstruct(record, None, *rv)  # type: ignore[attr-defined]


def _install_copy() -> None:
    if "__copy__" in vars(logging.LogRecord):  # somebody else's: leave it
        return
    logging.LogRecord.__copy__ = _copy_record  # type: ignore[attr-defined]


def _json_line(record: logging.LogRecord) -> str:
    out: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "message": _message(record),
        "trace_id": getattr(record, "trace_id", _INVALID_TRACE),
        "span_id": getattr(record, "span_id", _INVALID_TRACE),
        "service.name": getattr(record, "service_name", _state.service_name),
    }
    if record.exc_info:
        out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_") and key not in out:
            out[key] = (
                value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
            )
    return json.dumps(out, default=str)


class _JsonFormatter(logging.Formatter):
    """The console handler's formatter in JSON mode (``PLATFORM_OTEL_LOG_FORMAT=json``).

    Only the handler ``init()`` adds gets it: the formatters of handlers the application
    or its server configured are theirs, and their output is kept.
    """

    def format(self, record: logging.LogRecord) -> str:
        try:
            return _json_line(record)
        except Exception:
            report_internal_error("json log format")
        return super().format(record)


# What a formatter writes, decided once per formatter (see _line_kind).
_TEXT = 1  # plain text: `` trace_id=… span_id=…`` is appended to the first line
_MESSAGE = 2  # the message alone (``%(message)s``): text, unless this line is a JSON object
_JSON = 3  # one JSON object per line, ``", "``/``": "`` separators: fields are inserted
_JSON_COMPACT = 4  # one JSON object per line, ``","``/``":"`` separators
_OPAQUE = 5  # neither (a JSON array, XML, a Python repr, binary framing): left as it is

_KIND_ATTR = "_platform_otel_line_kind"
_TRIES_ATTR = "_platform_otel_line_tries"
_MAX_TRIES = 8  # lines of "{...}" that are not JSON before a formatter is taken as neither
_MESSAGE_ONLY = frozenset({"%(message)s", "{message}", "${message}"})
# Control characters that do not occur in a text line (tab, newline, CR and the ANSI
# escape of coloured consoles do): their presence means a framing the package can't know.
_BINARY = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r", "\x1b"}
_MAX_CACHED_FORMATTERS = 1024
_NOT_A_VALUE_END = frozenset(" \t\r\n{")  # before "}": an empty object or indentation
_kinds: weakref.WeakKeyDictionary[logging.Formatter, int] = weakref.WeakKeyDictionary()


def _sample_kind(text: str) -> int | None:
    """What kind of line ``text`` is (one parse); ``None``: "{...}" that is not JSON.

    That may be a Python dict's repr (never JSON) or a JSON template such as
    ``'{"msg": "%(message)s"}'`` whose message held a quote this once: undecided.
    """
    line = text.strip()
    if not line:
        return _TEXT
    if not _BINARY.isdisjoint(line):
        return _OPAQUE
    first, last = line[0], line[-1]
    if first == "{" or (first == "[" and last == "]"):
        try:
            value = json.loads(line)
        except ValueError:
            # "[INFO] ..." and "{name} said ..." are text.
            return None if first == "{" and last == "}" else _TEXT
        if not isinstance(value, dict):
            return _OPAQUE
        return _JSON if '": ' in line or not line[1:-1].strip() else _JSON_COMPACT
    if first == "<" and last == ">":
        return _OPAQUE
    return _TEXT


def _line_kind(formatter: logging.Formatter | None, text: str) -> int:
    """The kind of lines ``formatter`` writes, cached on it (or in a bounded weak map).

    A plain ``logging.Formatter`` whose format is the message alone is ``_MESSAGE``:
    its lines are whatever the application logs, decided line by line. Any other
    formatter is judged by ``text``, its first line written inside a span.
    """
    if formatter is None:  # logging's default formatter: the message alone
        return _MESSAGE
    kind = getattr(formatter, _KIND_ATTR, None)
    if kind.__class__ is int:
        return int(kind)
    try:
        kind = _kinds.get(formatter)
    except TypeError:  # unhashable or not weakly referenceable: judged again each time
        kind = None
    if kind is not None:
        return kind
    if type(formatter) is logging.Formatter and getattr(formatter, "_fmt", None) in _MESSAGE_ONLY:
        kind = _MESSAGE
    else:
        kind = _sample_kind(text)
    if kind is None:
        # Left alone this time; judged again on the next lines, _MAX_TRIES lines at most.
        try:
            tries = int(getattr(formatter, _TRIES_ATTR, 0)) + 1
            setattr(formatter, _TRIES_ATTR, tries)
        except Exception:
            tries = _MAX_TRIES
        if tries < _MAX_TRIES:
            return _OPAQUE
        kind = _OPAQUE
    try:
        setattr(formatter, _KIND_ATTR, kind)
    except Exception:  # __slots__, a frozen class
        try:
            if len(_kinds) < _MAX_CACHED_FORMATTERS:
                _kinds[formatter] = kind
        except TypeError:
            pass
    return kind


def _with_json_ids(text: str, trace_id: str, span_id: str, compact: bool) -> str:
    """``text`` (one JSON object) with ``trace_id`` and ``span_id`` as its last fields.

    Inserted before the closing brace, so every other field keeps its bytes and order.
    """
    end = len(text)
    if text[-1] != "}":  # a trailing newline or blank
        end = len(text.rstrip())
    head = text[: end - 1].rstrip()
    if compact:
        ids = f'"trace_id":"{trace_id}","span_id":"{span_id}"'
        sep = "" if head.endswith("{") else ","
    else:
        ids = f'"trace_id": "{trace_id}", "span_id": "{span_id}"'
        sep = "" if head.endswith("{") else ", "
    return f"{head}{sep}{ids}}}{text[end:]}"


def _message_line(text: str, trace_id: str, span_id: str) -> str:
    """A ``%(message)s`` line: a JSON object gets fields, a JSON array stays, text the suffix.

    Such a formatter prints whatever the application logs (gunicorn's JSON
    ``access_log_format``, ``logger.info(json.dumps(...))``), so each line is looked at,
    by its first and last characters, without parsing it: ``{"…}`` (or ``{}``) is an
    object; inserting before its closing brace keeps valid JSON valid. Only a line that
    starts with ``[`` and ends with ``]`` is parsed, to tell a JSON array from text.
    """
    first = text[0]
    if first == "{":
        if text[-1] == "}" and text[1:2] == '"' and text[-2] not in _NOT_A_VALUE_END:
            # One line of json.dumps output (the common case): no copy but the result's.
            if '"trace_id"' in text:
                return text
            if '": ' in text:
                return f'{text[:-1]}, "trace_id": "{trace_id}", "span_id": "{span_id}"}}'
            return f'{text[:-1]},"trace_id":"{trace_id}","span_id":"{span_id}"}}'
        last = text[-1] if text[-1] == "}" else text.rstrip()[-1:]
        after = text[1:2]
        if after.isspace():
            after = text[1:].lstrip()[:1]
        if last == "}" and (after == '"' or after == "}"):
            if '"trace_id"' in text:
                return text
            return _with_json_ids(text, trace_id, span_id, after == '"' and '": ' not in text)
    elif first == "[" and text.rstrip()[-1:] == "]":
        try:
            json.loads(text)
            return text  # a JSON array: no place for the ids
        except ValueError:
            pass
    return _text_line(text, trace_id, span_id)


def _text_line(text: str, trace_id: str, span_id: str) -> str:
    # On the message's own line, not after a traceback: shippers split on newlines.
    first, newline, rest = text.partition("\n")
    return f"{first} trace_id={trace_id} span_id={span_id}{newline}{rest}"


def _correlated(self: logging.Handler, record: logging.LogRecord, text: str) -> str:
    """``text`` (what the handler's formatter wrote) with the record's ids, in its own syntax."""
    trace_id = getattr(record, "trace_id", _INVALID_TRACE)
    if trace_id == _INVALID_TRACE or trace_id in text:
        return text
    span_id: str = record.span_id  # type: ignore[attr-defined]
    if not text:
        return _text_line(text, trace_id, span_id)
    formatter = self.formatter
    kind = getattr(formatter, _KIND_ATTR, None)  # the cached decision (None: not made yet)
    if kind.__class__ is not int:  # not made yet, or a formatter whose __getattr__ answers
        kind = _line_kind(formatter, text)
    if kind == _TEXT:
        return _text_line(text, trace_id, span_id)
    if kind == _MESSAGE:
        queue_handler = getattr(sys.modules.get("logging.handlers"), "QueueHandler", None)
        if queue_handler is not None and isinstance(self, queue_handler):
            # QueueHandler.prepare() formats the message for the listener's handlers, which
            # add the ids in their own syntax (a JSON formatter there: fields, not a suffix
            # inside its "message").
            return text
        return _message_line(text, trace_id, span_id)
    if kind == _OPAQUE or text[0] != "{" or '"trace_id"' in text:
        # A JSON formatter's line that is not an object (it changed its mind), or one that
        # already has a trace_id field of its own: left as the formatter wrote it.
        return text
    if kind == _JSON and text[-1] == "}" and text[-2] not in _NOT_A_VALUE_END:
        # json.dumps's own layout (the common case): the ids before the closing brace.
        return f'{text[:-1]}, "trace_id": "{trace_id}", "span_id": "{span_id}"}}'
    return _with_json_ids(text, trace_id, span_id, kind == _JSON_COMPACT)


def _install_format() -> None:
    original = logging.Handler.format
    _state.old_format = original

    def format(self: logging.Handler, record: logging.LogRecord) -> str:
        text = original(self, record)
        try:
            return _correlated(self, record, text)
        except Exception:
            report_internal_error("log line correlation")
        return text

    logging.Handler.format = format  # type: ignore[method-assign]


def _otel_logger(name: str) -> Any:
    lg = _state.otel_loggers.get(name)
    if lg is None:
        if len(_state.otel_loggers) >= _MAX_LOGGERS:
            name = "python.logging"  # bound the cache; scope name falls back to a shared one
            lg = _state.otel_loggers.get(name)
            if lg is not None:
                return lg
        lg = _state.logger_provider.get_logger(name)
        _state.otel_loggers[name] = lg
    return lg


_OTEL_HANDLER_MODULES = (
    "opentelemetry.sdk._logs._internal",
    "opentelemetry.instrumentation.logging.handler",
)


_handler_types: tuple[type, ...] = ()
_modules_seen = -1  # len(sys.modules) when _handler_types was computed


def _otel_handler_types() -> tuple[type, ...]:
    """The LoggingHandler classes imported so far (recomputed only after new imports)."""
    global _handler_types, _modules_seen
    if len(sys.modules) != _modules_seen and len(_handler_types) < len(_OTEL_HANDLER_MODULES):
        _modules_seen = len(sys.modules)
        _handler_types = tuple(
            cls
            for cls in (
                getattr(sys.modules.get(m), "LoggingHandler", None) for m in _OTEL_HANDLER_MODULES
            )
            if isinstance(cls, type)
        )
    return _handler_types


def _exported_by_otel_handler(logger: logging.Logger, record: logging.LogRecord) -> bool:
    """Whether an OpenTelemetry ``LoggingHandler`` on this logger's handler chain (as
    ``opentelemetry-instrument`` installs on root) already exported ``record``."""
    types = _otel_handler_types()
    if not types:
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, types) and record.levelno >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent  # type: ignore[assignment]
    return False


def _message(record: logging.LogRecord) -> str:
    """The formatted message; the raw template when the app's arguments don't fit it.

    A bad ``%`` argument is the application's bug: logging reports it itself
    ("--- Logging error ---"); the exported record keeps the template.
    """
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


def _export(record: logging.LogRecord, logger: logging.Logger) -> None:
    name = record.name
    if name in _ACCESS_LOGGERS and not _state.export_access:
        # An access line written inside a traced request repeats its server span (method,
        # route, status, duration, client) and is not exported unless asked for
        # (PLATFORM_OTEL_LOG_EXPORT_ACCESS): it doubled the OTLP log volume of a web
        # service and cost ~10 % of a hello-world worker's throughput. The console line
        # keeps its trace id.
        ctx = _contexts.get(record)
        if ctx is not None and ctx[5]:  # SpanContext.is_valid
            return
    if in_export() or name.startswith(_SKIP_EXPORT_PREFIXES):
        return
    if _exported_by_otel_handler(logger, record):
        return
    attributes: dict[str, Any] = {
        "code.file.path": record.pathname,
        "code.function.name": record.funcName,
        "code.line.number": record.lineno,
    }
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, exc, tb = record.exc_info
        attributes["exception.type"] = exc_type.__qualname__
        if exc is not None:
            attributes["exception.message"] = str(exc)
        attributes["exception.stacktrace"] = "".join(traceback.format_exception(exc_type, exc, tb))
    fields = record.__dict__
    extra_keys = fields.keys() - _RESERVED  # set difference in C: usually only private keys remain
    if extra_keys:
        extras = 0
        for key in [k for k in fields if k in extra_keys]:  # in the record's order
            value = fields[key]
            if key.startswith("_") or extras >= _MAX_EXTRA_ATTRIBUTES:
                continue
            if isinstance(value, (str, bool, int, float)):
                attributes[key] = value
                extras += 1
    levelno = record.levelno
    severity = _state.severities.get(levelno)
    if severity is None:
        severity = SeverityNumber(_SEVERITY.get(levelno) or min(24, max(1, levelno // 10 * 4 + 1)))
        _state.severities[levelno] = severity
    severity_text = _SEVERITY_TEXT.get(record.levelname, record.levelname)
    msg = record.msg
    if msg.__class__ is dict and "_logger" in record.__dict__:
        # structlog through the standard library (ProcessorFormatter.wrap_for_formatter): the
        # message is structlog's event dict; its event is the body, its pairs attributes.
        body: Any = str(msg.get("event", ""))
        event_attributes(msg, attributes)
    else:
        # A handler's Formatter has just set record.message; format only if none did.
        body = record.__dict__.get("message")
        if body is None:
            body = _message(record)
    otel_logger = _otel_logger(record.name)
    tagged = _tagged.get(record)
    span_context = _contexts.get(record)  # the factory's; the tagged one if any
    lean = _state.lean
    fields = {
        "timestamp": int(record.created * 1e9),
        "observed_timestamp": time.time_ns(),
        "severity_number": severity,
        "severity_text": severity_text,
        "body": body,
        "attributes": attributes,
    }
    if lean is not None and span_context is not None:
        if lean.emit(otel_logger, span_context=span_context, **fields):
            return
        _state.lean = None  # processors were added since init(): the SDK path from now on
    context = (
        trace.set_span_in_context(trace.NonRecordingSpan(tagged)) if tagged is not None else None
    )
    otel_logger.emit(context=context, **fields)


# --- other logging libraries (structlog, loguru): their events through the same exporter ---

#: Event-dict keys that are fields of the log record itself, not attributes.
_EVENT_FIELDS = frozenset(
    {
        "event",
        "level",
        "log_level",
        "timestamp",
        "logger",
        "logger_name",
        "exc_info",
        "exception",
        "stack_info",
        "positional_args",
        "trace_id",
        "span_id",
    }
)
_MAX_ATTRIBUTE_TEXT = 4096  # other values are exported as their str(), this long at most


def attribute_value(value: Any) -> Any:
    """An OTLP attribute value for an application's key-value pair: str/bool/int/float as
    they are, anything else as its ``str()`` (bounded), so a key is never silently lost."""
    if isinstance(value, (str, bool, int, float)):
        return value
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text[:_MAX_ATTRIBUTE_TEXT]


def event_attributes(
    event: Any,
    attributes: dict[str, Any],
    skip: frozenset[str] = _EVENT_FIELDS,
    exceptions: bool = True,
) -> None:
    """Add an event's key-value pairs to ``attributes``: at most 32, private keys left out.

    ``skip``: keys that are fields of the record, not attributes. ``exceptions``: read
    structlog's ``exc_info`` and ``exception`` keys as the event's exception.
    """
    extras = 0
    for key, value in event.items():
        if (
            extras >= _MAX_EXTRA_ATTRIBUTES
            or not isinstance(key, str)
            or key in skip
            or key.startswith("_")
            or key in attributes
            or value is None
        ):
            continue
        attributes[key] = attribute_value(value)
        extras += 1
    if not exceptions:
        return
    exc = event.get("exc_info")
    if exc is not None and "exception.type" not in attributes:
        add_exception(exc, attributes)
    text = event.get("exception")
    if isinstance(text, str) and text and "exception.stacktrace" not in attributes:
        attributes["exception.stacktrace"] = text  # already formatted (format_exc_info)


def add_exception(exc_info: Any, attributes: dict[str, Any]) -> None:
    """``exception.*`` attributes for an exception, an ``exc_info`` tuple or ``True``."""
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
        return
    exc_type, exc, tb = exc_info
    attributes["exception.type"] = exc_type.__qualname__
    if exc is not None:
        attributes["exception.message"] = str(exc)
    attributes["exception.stacktrace"] = "".join(traceback.format_exception(exc_type, exc, tb))


def exporting() -> bool:
    """Whether log events are exported: the integration is on with an OTLP logs pipeline."""
    return _state.installed and _state.logger_provider is not None


def in_stdlib_handlers() -> bool:
    """Whether this thread is inside a stdlib logger's handlers (a forwarded record: the
    stdlib integration exports it). Known only after :func:`watch_stdlib_handlers`."""
    return _handling.record is not None


def watch_stdlib_handlers() -> None:
    """Make :func:`in_stdlib_handlers` true inside stdlib handlers from now on (a thread-local
    store per stdlib record; off unless a library that can receive forwarded records asks)."""
    _state.watch_handlers = True


def emit_event(
    scope: str,
    levelno: int,
    level_name: str,
    body: Any,
    attributes: dict[str, Any],
    span_context: Any,
    timestamp_ns: int | None = None,
) -> None:
    """Export one log event written through another library than ``logging`` (structlog,
    loguru) with the provider, limits and loop guards of the stdlib records.

    ``span_context`` is the ``SpanContext`` the event was written in (or
    ``INVALID_SPAN_CONTEXT``): the caller takes it where the event was written, since a
    library may hand events to another thread.
    """
    if not exporting() or in_export() or scope.startswith(_SKIP_EXPORT_PREFIXES):
        return
    severity = _state.severities.get(levelno)
    if severity is None:
        severity = SeverityNumber(_SEVERITY.get(levelno) or min(24, max(1, levelno // 10 * 4 + 1)))
        _state.severities[levelno] = severity
    now = time.time_ns()
    fields: dict[str, Any] = {
        "timestamp": timestamp_ns or now,
        "observed_timestamp": now,
        "severity_number": severity,
        "severity_text": _SEVERITY_TEXT.get(level_name, level_name),
        "body": body,
        "attributes": attributes,
    }
    otel_logger = _otel_logger(scope)
    if span_context is None:
        span_context = trace.INVALID_SPAN_CONTEXT
    lean = _state.lean
    if lean is not None:
        if lean.emit(otel_logger, span_context=span_context, **fields):
            return
        _state.lean = None
    context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    otel_logger.emit(context=context, **fields)


def _install_export() -> None:
    original = logging.Logger.callHandlers
    _state.old_call_handlers = original

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if _state.watch_handlers:
            previous = _handling.record
            _handling.record = record
            try:
                original(self, record)
            finally:
                _handling.record = previous
        else:
            original(self, record)
        try:
            _export(record, self)
        except Exception:
            report_internal_error("log export")

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]


def _install_console(mode: str, level: str) -> None:
    root = logging.getLogger()
    if mode == "never" or (mode == "auto" and root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if _state.json_mode
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler._platform_otel = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _state.console_handler = handler
    if (
        root.level == logging.WARNING
    ):  # Python's default: make INFO visible, as basicConfig users expect
        _state.old_root_level = root.level
        root.setLevel(level)


def instrument(ctx: InstrumentationContext) -> str | None:
    if _state.installed:
        return None
    settings = ctx.settings
    _state.service_name = settings.service_name
    _state.json_mode = settings.log_format == "json"
    _state.export_access = settings.log_export_access
    _state.logger_provider = ctx.logger_provider
    _state.otel_loggers = {}
    _state.severities = {}
    _state.lean = _fast.log_emitter(ctx.logger_provider)
    _install_factory()
    _install_copy()
    _install_format()
    if ctx.logger_provider is not None:
        _install_export()
    _install_console(settings.log_console, settings.log_level)
    _state.installed = True
    return None


def uninstrument() -> None:
    if not _state.installed:
        return
    if _state.old_factory is not None:
        logging.setLogRecordFactory(_state.old_factory)
    if vars(logging.LogRecord).get("__copy__") is _copy_record:  # ours, not somebody else's
        del logging.LogRecord.__copy__  # type: ignore[attr-defined]
    if _state.old_format is not None:
        logging.Handler.format = _state.old_format  # type: ignore[method-assign]
    if _state.old_call_handlers is not None:
        logging.Logger.callHandlers = _state.old_call_handlers  # type: ignore[method-assign]
    if _state.console_handler is not None:
        logging.getLogger().removeHandler(_state.console_handler)
    if _state.old_root_level is not None:
        logging.getLogger().setLevel(_state.old_root_level)
    _state.__dict__.clear()
    _state.otel_loggers = {}
