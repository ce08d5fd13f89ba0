"""loguru: a patcher that correlates each record and a sink that exports it over OTLP.

loguru does not use ``logging``, so the stdlib integration neither stamps nor
exports its records. Two plain callables, used through loguru's own API:

* :func:`patcher` (``logger.configure(patcher=...)``) runs in the thread that
  logs. It puts ``trace_id``/``span_id`` into ``record["extra"]`` (``"0"`` outside
  a span, as on stdlib records), where formats (``{extra[trace_id]}``) and
  ``serialize=True`` print them, and keeps the span context on the record for
  the sink.
* :func:`sink` (``logger.add(sink)``) exports the record: its message as the
  body, its level, its extras as attributes, the trace context it was written
  in (also with ``enqueue=True``, where the sink runs on loguru's thread).

:func:`install` (public name: ``platform_otel.logs.instrument_loguru``) does
both, once. A stdlib record that the application forwards into loguru (the
usual ``InterceptHandler``) is exported by the stdlib integration and not again
by the sink.

loguru is imported only by :func:`install` when it is not given a logger.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from opentelemetry import trace

from .._safety import report_internal_error
from .logging import (
    add_exception,
    emit_event,
    event_attributes,
    exporting,
    in_stdlib_handlers,
    watch_stdlib_handlers,
)

__all__ = ["LIBRARY", "install", "patcher", "sink"]

LIBRARY = "loguru"

#: Record key (not printed by any format) with (trace_id, span_id, trace_flags, forwarded).
_CONTEXT_KEY = "_platform_otel_context"
_SCOPE = "loguru"
_IDS = frozenset({"trace_id", "span_id"})
_lock = threading.Lock()
_sink_ids: dict[int, int] = {}  # id(loguru core) -> handler id of our sink


def patcher(record: dict[str, Any]) -> None:
    """loguru patcher: the ids into ``record["extra"]`` (``"0"`` outside a span). Never raises."""
    try:
        span_context = trace.get_current_span().get_span_context()
        forwarded = in_stdlib_handlers()
        if span_context.is_valid:
            extra = record["extra"]
            extra.setdefault("trace_id", f"{span_context.trace_id:032x}")
            extra.setdefault("span_id", f"{span_context.span_id:016x}")
            record[_CONTEXT_KEY] = (
                span_context.trace_id,
                span_context.span_id,
                int(span_context.trace_flags),
                forwarded,
            )
        else:
            # As the stdlib records' "0": a format that prints {extra[trace_id]} never fails.
            extra = record["extra"]
            extra.setdefault("trace_id", "0")
            extra.setdefault("span_id", "0")
            if forwarded:
                record[_CONTEXT_KEY] = (0, 0, 0, True)
    except Exception:
        report_internal_error("loguru patcher")


def _span_context(record: dict[str, Any]) -> tuple[Any, bool]:
    """(SpanContext the record was written in, whether stdlib forwarded it)."""
    saved = record.get(_CONTEXT_KEY)
    if saved is None:  # no patcher: the sink runs in the logging thread unless enqueued
        return trace.get_current_span().get_span_context(), in_stdlib_handlers()
    trace_id, span_id, flags, forwarded = saved
    if not trace_id:
        return trace.INVALID_SPAN_CONTEXT, forwarded
    return (
        trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=trace.TraceFlags(flags)),
        forwarded,
    )


def sink(message: Any) -> None:
    """loguru sink: export the record over OTLP with its level, message, extras and trace."""
    try:
        record = message.record
        span_context, forwarded = _span_context(record)
        if forwarded or not exporting():
            return
        level = record["level"]
        file = record["file"]
        attributes: dict[str, Any] = {
            "code.file.path": getattr(file, "path", str(file)),
            "code.function.name": record["function"],
            "code.line.number": record["line"],
        }
        exception = record["exception"]
        if exception is not None:
            add_exception(tuple(exception), attributes)
        # extra is the application's alone: every key is an attribute but the ids.
        event_attributes(record["extra"], attributes, _IDS, exceptions=False)
        emit_event(
            record["name"] or _SCOPE,
            level.no,
            level.name,
            record["message"],
            attributes,
            span_context,
            int(record["time"].timestamp() * 1e9),
        )
    except Exception:
        report_internal_error("loguru sink")


def install(logger: Any = None, *, level: str | int = "DEBUG") -> int:
    """Correlate and export loguru's records: install :func:`patcher` and add :func:`sink`.

    ``logger`` defaults to ``loguru.logger``. ``logger.configure(patcher=...)`` replaces a
    patcher configured before; an application with its own patcher calls
    :func:`patcher` from it instead. Calling this again replaces the sink it added (also
    after ``logger.remove()``), so a record is exported once. Returns the sink's handler
    id (for ``logger.remove``).
    """
    if logger is None:
        from loguru import logger as default_logger

        logger = default_logger
    watch_stdlib_handlers()
    logger.configure(patcher=patcher)
    core = id(getattr(logger, "_core", logger))
    with _lock:
        previous = _sink_ids.pop(core, None)
        if previous is not None:  # replaced, not added twice (it may be gone: logger.remove())
            with contextlib.suppress(ValueError):
                logger.remove(previous)
        handler_id = int(logger.add(sink, level=level, format="{message}", catch=False))
        _sink_ids[core] = handler_id
    return handler_id
