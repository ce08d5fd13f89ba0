"""The batch-queue hand-off of the fast path: spans queued already encoded, without the
SDK's per-item ``os.getpid()`` call.

Reads the SDK ``BatchProcessor``'s private fields listed in
:mod:`platform_otel._otel_private` (checked at ``init()``; with any of them missing the
fast path is off and the SDK's own ``BatchSpanProcessor`` runs).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .._safety import log_once, report_internal_error
from . import otlp

__all__ = ["EncodingBatchSpanProcessor", "emit_queued", "encode_at_end", "queue_emitter"]


def emit_queued(queue: Any, item: Any) -> None:
    """``BatchProcessor.emit``, warning once per process (not per item) when the queue is full."""
    pending = getattr(queue, "_queue", None)
    if pending is not None and len(pending) >= queue._max_queue_size:
        kind = getattr(queue, "_exporting", "telemetry")
        log_once(
            f"export-queue-full:{kind}",
            logging.WARNING,
            "platform-otel: the %s export queue is full (%d items): each new item replaces the "
            "oldest until the exporter catches up (collector unreachable or too slow?). Logged "
            "once; see OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE.",
            kind,
            queue._max_queue_size,
        )
    queue.emit(item)


class _Pid:
    """This process's pid, kept current by :func:`after_fork_in_child` (``os.getpid()`` is
    a system call)."""

    value = -1


def _track_pid() -> None:
    if _Pid.value == -1:
        _Pid.value = os.getpid()


def after_fork_in_child() -> None:
    if _Pid.value != -1:
        _Pid.value = os.getpid()


_BATCH_FIELDS = (
    "_shutdown",
    "_pid",
    "_queue",
    "_max_queue_size",
    "_max_export_batch_size",
    "_worker_awaken",
)


def queue_emitter(queue: Any) -> Callable[[Any], None]:
    """:func:`emit_queued` bound to one SDK batch processor, for per-request paths.

    The SDK's ``emit`` makes an ``os.getpid()`` system call for every item (its fork
    check); this compares with a pid kept by an at-fork hook instead. A full queue
    (collector down) takes a path of its own: the item still replaces the oldest one,
    as the SDK's bounded deque does, and the SDK's drop count is still kept, but without
    the system call, the lock of :func:`log_once` and the muted "Queue full" warning
    call per item (0.4 µs per item instead of ~2 µs, docs/performance.md). The
    SDK's own ``emit`` runs whenever anything else is unusual (shut down, forked, its
    "Queue full" warning enabled by the user), and for a processor without the
    expected fields.
    """
    if not all(hasattr(queue, name) for name in _BATCH_FIELDS) or not (
        isinstance(queue._queue, collections.deque) and queue._queue.maxlen is not None
    ):
        return lambda item: emit_queued(queue, item)
    _track_pid()
    sdk_logger = logging.getLogger(type(queue).__module__)
    drop_items = getattr(getattr(queue, "_metrics", None), "drop_items", None)
    warned = False

    def emit(item: Any) -> None:
        nonlocal warned
        pending = queue._queue
        if queue._shutdown or queue._pid != _Pid.value:
            emit_queued(queue, item)
            return
        if len(pending) >= queue._max_queue_size:
            if not warned or drop_items is None or sdk_logger.isEnabledFor(logging.WARNING):
                warned = True
                emit_queued(queue, item)  # warns once (ours), counts and queues (the SDK's)
                return
            drop_items(1)  # the SDK's self-metric of dropped items
        pending.appendleft(item)  # the SDK's order: its worker pops the oldest from the right
        if len(pending) >= queue._max_export_batch_size:
            awaken = queue._worker_awaken
            if not awaken.is_set():
                awaken.set()

    return emit


class EncodingBatchSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor`` that queues each span already encoded (``otlp.encode_span``).

    Used in front of an exporter with ``accepts_encoded``. The span is encoded by the
    thread that ends it, while it is hot in the CPU cache, and the queue holds plain
    bytes instead of span objects (nothing for the garbage collector to track). In a
    uvicorn worker under load this cut the export path's CPU per request by more than
    half compared with encoding whole batches on the exporter thread
    (docs/performance.md).
    """

    def __init__(self, span_exporter: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(span_exporter, *args, **kwargs)
        #: Queues one encoded item (lean spans that skip ``on_end`` use it too).
        self.emit_encoded = queue_emitter(self._batch_processor)

    def on_end(self, span: Any) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        self.emit_encoded(encode_at_end(span))


def encode_at_end(span: Any, encode: Callable[[Any], Any] | None = None) -> Any:
    """The ended span encoded as a queue item (by ``encode``, default
    ``otlp.encode_span``); the span itself if encoding fails (reported once), which
    the exporter then encodes the ordinary way."""
    try:
        return (encode or otlp.encode_span)(span)
    except Exception:
        report_internal_error("encoding a span at end")
        return span
