"""structlog used natively: a processor that correlates and exports each event.

structlog's own pipeline never reaches ``logging`` when it renders to a
``PrintLogger`` (its default) or any other non-stdlib logger, so neither the
record factory nor the OTLP export of :mod:`.logging` sees its events. The
application adds :func:`processor` to its processor chain, just before the
renderer::

    structlog.configure(processors=[..., platform_otel.logs.structlog_processor, JSONRenderer()])

It puts ``trace_id``/``span_id`` into the event dict inside a span (so the
renderer prints them in its own syntax), and exports the event over OTLP:
``event`` is the body, the level the severity, the other key-value pairs the
attributes. An event that goes on to a stdlib logger (``structlog.stdlib``) is
left to the stdlib integration, which puts the ids in its line and exports the
record, once; inside ``ProcessorFormatter`` the processor adds the ids of the
record being rendered.

structlog is never imported here: a processor is a plain callable.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from .._safety import report_internal_error
from .logging import emit_event, event_attributes, exporting

__all__ = ["LIBRARY", "processor"]

LIBRARY = "structlog"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "log": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_SCOPE = "structlog"


def _level(method_name: str, event_dict: dict[str, Any]) -> tuple[int, str]:
    """(stdlib level number, level name) from ``add_log_level``'s key or the method called."""
    name = event_dict.get("level") or event_dict.get("log_level") or method_name
    name = str(name).lower()
    levelno = _LEVELS.get(name, logging.INFO)
    return levelno, logging.getLevelName(levelno)


def _timestamp_ns(event_dict: dict[str, Any]) -> int | None:
    """The event's time when ``TimeStamper(fmt=None)`` stored it as a number (else: now)."""
    value = event_dict.get("timestamp")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value * 1e9)
    return None


def processor(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``trace_id``/``span_id`` into the event dict, the event over OTLP.

    Put it just before the renderer, after processors that drop events or add keys
    (``add_log_level``, ``TimeStamper``, ``format_exc_info``), so what is exported is
    what is printed. Outside a span, no ids are added. Never raises.
    """
    try:
        record = event_dict.get("_record")
        if isinstance(record, logging.LogRecord):
            # Inside ProcessorFormatter (possibly on a QueueHandler's thread): the ids of the
            # span the record was written in; the stdlib integration exports the record.
            trace_id = record.__dict__.get("trace_id", "0")
            if trace_id != "0":
                event_dict.setdefault("trace_id", trace_id)
                event_dict.setdefault("span_id", record.__dict__.get("span_id"))
            return event_dict
        if isinstance(logger, logging.Logger):
            # The event becomes a stdlib record, which carries the ids already, gets them in
            # its line and is exported by .logging. Adding them here would make
            # render_to_log_kwargs pass extra={"trace_id": ...}, which logging refuses.
            return event_dict
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event_dict.setdefault("trace_id", f"{span_context.trace_id:032x}")
            event_dict.setdefault("span_id", f"{span_context.span_id:016x}")
        if not exporting():
            return event_dict
        levelno, level_name = _level(method_name, event_dict)
        attributes: dict[str, Any] = {}
        event_attributes(event_dict, attributes)
        scope = event_dict.get("logger") or event_dict.get("logger_name") or _SCOPE
        emit_event(
            str(scope),
            levelno,
            level_name,
            str(event_dict.get("event", "")),
            attributes,
            span_context,
            _timestamp_ns(event_dict),
        )
    except Exception:
        report_internal_error("structlog processor")
    return event_dict
