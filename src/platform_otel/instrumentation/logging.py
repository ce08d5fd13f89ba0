"""Log correlation: every stdlib log record carries the trace it was written in.

Four small patches of the ``logging`` module, each reversible:

1. A **record factory** stamps ``trace_id``/``span_id`` (and the official
   instrumentation's ``otelTraceID``/``otelSpanID``/``otelTraceSampled``/
   ``otelServiceName``, plus ``service_name``) on each record *when it is
   created*, i.e. in the thread and context of the code that logs.
2. ``Handler.format`` is wrapped so **every handler prints the ids**, including
   handlers installed before ``init()`` or later by uvicorn/gunicorn's
   ``dictConfig`` (which is why ``basicConfig``-style setups lose them): text
   mode appends `` trace_id=… span_id=…`` inside a span; JSON mode writes one JSON
   object per line.
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
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

from .._context import SPAN_KEY, current_var
from .._exporters import in_export
from .._lean_logs import LeanLogEmitter
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
    lean: LeanLogEmitter | None = None
    severities: dict[int, SeverityNumber] = {}
    otel_loggers: dict[str, Any] = {}
    old_factory: Any = None
    old_format: Any = None
    old_call_handlers: Any = None
    console_handler: logging.Handler | None = None
    old_root_level: int | None = None


_state = _State()


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


def _install_format() -> None:
    original = logging.Handler.format
    _state.old_format = original

    def format(self: logging.Handler, record: logging.LogRecord) -> str:
        if _state.json_mode:
            try:
                return _json_line(record)
            except Exception:
                report_internal_error("json log format")
        text = original(self, record)
        try:
            trace_id = getattr(record, "trace_id", _INVALID_TRACE)
            if trace_id != _INVALID_TRACE and trace_id not in text:
                # On the message's own line, not after a traceback: shippers split on newlines.
                first, newline, rest = text.partition("\n")
                return f"{first} trace_id={trace_id} span_id={record.span_id}{newline}{rest}"  # type: ignore[attr-defined]
        except Exception:
            report_internal_error("text log format")
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


def _install_export() -> None:
    original = logging.Logger.callHandlers
    _state.old_call_handlers = original

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
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
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    _state.lean = (
        LeanLogEmitter.create(ctx.logger_provider) if ctx.logger_provider is not None else None
    )
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
