"""Lean OTLP log emission: a stdlib log record into the SDK's batch queue in a few µs.

Why: ``Logger.emit`` of the OpenTelemetry SDK costs ~20 µs per record on the
benchmark machine (the API ``LogRecord`` looks the context up again, a
``ReadWriteLogRecord`` re-validates every attribute into ``BoundedAttributes``,
then ``BatchLogRecordProcessor.on_emit`` ``copy.copy``-es the record and wraps it
in a ``ReadableLogRecord``). With uvicorn's access log on, every request pays
this once, which was the largest single cost of log correlation.

:class:`LeanLogEmitter` builds the ``ReadableLogRecord`` the batch processor
would have queued (same fields, same resource, scope and limits) and puts it
on the processor's queue directly; when the processors feed ``_otlp_fast``'s
exporter, it queues the record's OTLP bytes instead (``_otlp_fast.Encoded``) and
builds no SDK object at all. It is used only when every processor of the
``LoggerProvider`` is an SDK ``BatchLogRecordProcessor`` and the SDK's internal
metrics are off: then nothing but the queue would have seen the record.
:meth:`LeanLogEmitter.create` returns ``None`` otherwise, and records go
through ``Logger.emit`` as usual. Attributes keep the SDK's semantics: when
the record has more attributes than the count limit, or a length limit is set,
they go through ``BoundedAttributes`` as in the SDK.
"""

from __future__ import annotations

import logging
from typing import Any

from .queue import queue_emitter

__all__ = ["LeanLogEmitter"]

_logger = logging.getLogger(__name__)


class LeanLogEmitter:
    """Queues log records on the provider's batch processors (see module doc)."""

    def __init__(self, provider: Any, queues: list[Any]) -> None:
        from opentelemetry._logs import LogRecord
        from opentelemetry.context import Context
        from opentelemetry.sdk._logs import ReadableLogRecord

        from .otlp import encode_log_record

        self._encode = encode_log_record
        self._provider = provider
        self._queues = queues
        self._emitters = [queue_emitter(q) for q in queues]  # no os.getpid() per record
        # Every queue feeds an _otlp_fast exporter: queue encoded bytes, build no SDK objects.
        self._encoded = all(
            getattr(q, "_exporter", None) is not None
            and getattr(q._exporter, "accepts_encoded", False)
            for q in queues
        )
        self._record_type = LogRecord
        self._readable = ReadableLogRecord
        self._empty_context = Context()

    @classmethod
    def create(cls, provider: Any) -> LeanLogEmitter | None:
        """An emitter for an SDK ``LoggerProvider`` whose processors are all batch processors."""
        try:
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs._internal import SynchronousMultiLogRecordProcessor
            from opentelemetry.sdk._logs._internal._logger_metrics import NoOpLoggerMetrics
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            if type(provider) is not LoggerProvider:
                return None
            multi = provider._multi_log_record_processor
            if type(multi) is not SynchronousMultiLogRecordProcessor:
                return None
            if not isinstance(provider._logger_metrics, NoOpLoggerMetrics):
                return None
            processors = list(multi._log_record_processors)
            if not processors or any(type(p) is not BatchLogRecordProcessor for p in processors):
                return None
            queues = [getattr(p, "_batch_processor", None) for p in processors]
            if not all(callable(getattr(q, "emit", None)) for q in queues):
                return None
            return cls(provider, queues)
        except Exception:  # SDK internals moved: Logger.emit still works
            _logger.debug("lean log emitter unavailable", exc_info=True)
            return None

    def emit(
        self,
        logger: Any,
        *,
        timestamp: int,
        observed_timestamp: int,
        span_context: Any,
        severity_number: Any,
        severity_text: str,
        body: Any,
        attributes: dict[str, Any],
    ) -> bool:
        """Queue one record for ``logger`` (an SDK ``Logger``: resource, scope, limits).

        Returns False, having done nothing, when processors were added to the provider
        since this emitter was built: the caller then emits through ``Logger.emit``.
        """
        if len(self._provider._multi_log_record_processor._log_record_processors) != len(
            self._queues
        ):
            return False
        if not logger._is_enabled():
            return True
        limits = logger._log_record_limits
        max_attributes = limits.max_log_record_attributes
        max_length = limits.max_log_record_attribute_length
        if max_length is not None or (
            max_attributes is not None and len(attributes) > max_attributes
        ):
            from opentelemetry.attributes import BoundedAttributes

            attributes = BoundedAttributes(  # type: ignore[assignment]
                maxlen=max_attributes,
                attributes=attributes,
                immutable=False,
                max_value_len=max_length,
                extended_attributes=True,
            )
        if self._encoded:
            item: Any = self._encode(
                logger._resource,
                logger._instrumentation_scope,
                timestamp=timestamp,
                observed_timestamp=observed_timestamp,
                severity_number=severity_number.value,
                severity_text=severity_text,
                body=body,
                attributes=attributes,
                dropped_attributes=getattr(attributes, "dropped", 0),
                span_context=span_context,
            )
            for emit in self._emitters:
                emit(item)
            return True
        record = self._record_type.__new__(self._record_type)
        # The fields LogRecord.__init__ sets, without its second context lookup.
        record.__dict__.update(
            timestamp=timestamp,
            observed_timestamp=observed_timestamp,
            context=self._empty_context,
            trace_id=span_context.trace_id,
            span_id=span_context.span_id,
            trace_flags=span_context.trace_flags,
            severity_text=severity_text,
            severity_number=severity_number,
            body=body,
            attributes=attributes,
            event_name=None,
            exception=None,
        )
        readable = self._readable(
            log_record=record,
            resource=logger._resource,
            instrumentation_scope=logger._instrumentation_scope,
            limits=limits,
        )
        for emit in self._emitters:
            emit(readable)
        return True
