"""Lean recording spans for per-request hot paths, fully compatible with the SDK pipeline.

Why: an OpenTelemetry SDK span costs about 40 µs of CPU on the benchmark machine
(2-core VM, CPython 3.11) from ``start_span`` to ``end``: the sampler call builds
a ``SamplingResult``, the span builds a locked ``BoundedAttributes``, two
``BoundedList``s and a lock, ``end()`` copies everything into a new
``ReadableSpan``, and every attribute goes through a generic validator. For a
hello-world FastAPI route that alone is a fifth of the request's CPU.

:class:`LeanSpan` *is* a ``ReadableSpan`` (and an API ``Span``): it carries the
same fields under the same names, is handed to the same span processors
(``on_start``, ``_on_ending``, ``on_end``; no copy at ``end()``, it is
immutable from then on) and reaches every exporter unchanged: batch
processors, the OTLP encoders, the console exporter, a test's in-memory
exporter. What it leaves out is only overhead:

* the SDK's default sampler (``parentbased_always_on``) is evaluated inline;
  any other sampler is called exactly as the SDK calls it;
* attributes live in a plain dict; values of the four scalar types are stored
  directly (strings truncated to the attribute length limit) and anything else
  goes through the SDK's own validator (``opentelemetry.attributes``); the
  attribute, event and link count limits are the SDK's, with its rule (the
  oldest entry makes room for the new one);
* no lock: every mutator is a single dict or attribute store (atomic under the
  GIL) and ``end()`` is idempotent.

:class:`LeanTracer` is built from an SDK tracer and takes its resource, scope,
sampler, id generator, span limits and processors from it, so a user's
configuration (``OTEL_TRACES_SAMPLER``, ``OTEL_SPAN_*_LIMIT``, processors added to
the provider) applies unchanged. :func:`lean_tracer` returns ``None`` where that is
not possible (a foreign or no-op provider, SDK internal metrics switched on);
callers then use the ordinary tracer.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

__all__ = ["LeanSpan", "LeanTracer", "lean_tracer"]

_logger = logging.getLogger(__name__)

_UNSET = Status(StatusCode.UNSET)
# (sampled, random trace id) -> flags; built once, the SDK builds a TraceFlags per span
# (API < 1.41 has no random-trace-id flag: the SDK there never sets it, nor do we.)
_RANDOM_FLAG: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_FLAGS = {
    (sampled, random_id): TraceFlags(
        (TraceFlags.SAMPLED if sampled else 0) | (_RANDOM_FLAG if random_id else 0)
    )
    for sampled in (False, True)
    for random_id in (False, True)
}
_SCALARS = (str, bool, int, float)
_getrandbits = random.getrandbits
_new_tuple = tuple.__new__
_DEFAULT_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE


def _clean(key: str, value: Any, max_len: int | None) -> Any:
    """The SDK's attribute validation (sequences, bytes, invalid types); None to drop.

    Through the public ``BoundedAttributes``, which applies exactly that validation."""
    from opentelemetry.attributes import BoundedAttributes

    return BoundedAttributes(None, {key: value}, max_value_len=max_len).get(key)


class LeanSpan(trace_api.Span, ReadableSpan):
    """A recording span: the API ``Span`` to write, the SDK ``ReadableSpan`` to read."""

    _attributes: dict[str, Any]
    _context: SpanContext
    _platform_otel_lean = True  # the fast OTLP encoder reads these spans' fields directly
    # Defaults shared by every span until one is written (most spans never write them).
    _events: Sequence[Event] = ()
    _links: Sequence[trace_api.Link] = ()
    _status: Status = _UNSET
    _end_time: int | None = None
    _instrumentation_info = None
    _dropped_attributes = 0
    _dropped_events = 0
    _dropped_links = 0
    # Set once a status, event, link or dropped count is written: end() then leaves the
    # span to the general encoder instead of encoding its fields inline.
    _uncommon = False

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
    ) -> None:
        # Deliberately no super().__init__(): the fields below are ReadableSpan's own.
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        self._start_time = start_time
        self._resource = tracer.sdk_tracer.resource  # read per span: replaced after a fork
        self._instrumentation_scope = tracer.scope

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # -- ReadableSpan: dropped counts live in plain fields --------------------

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    # -- API Span ----------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            return
        if not key or not isinstance(key, str):
            _logger.warning("invalid attribute key %r: dropped", key)
            return
        max_len = self._tracer.max_attribute_length
        if type(value) in _SCALARS:
            if max_len is not None and type(value) is str and len(value) > max_len:  # type: ignore[arg-type]
                value = value[:max_len]  # type: ignore[index]
        else:
            value = _clean(key, value, max_len)
            if value is None:
                return
        attributes = self._attributes
        if key not in attributes and len(attributes) >= self._tracer.max_attributes:
            self._evict_oldest_attribute()
            if not attributes and self._tracer.max_attributes <= 0:
                return
        attributes[key] = value

    def set_name_and_scalars(
        self, name: str | None, key_a: str, value_a: Any, key_b: str, value_b: Any
    ) -> None:
        """``update_name`` and up to two ``set_attribute`` calls in one (a server span's route
        and status at the end of a request). Values are str or int, or None to skip."""
        if self._end_time is not None:
            return
        tracer = self._tracer
        attributes = self._attributes
        if tracer.max_attribute_length is not None or len(attributes) + 2 > tracer.max_attributes:
            # A limit could apply: the general path, with its rules.
            if name is not None:
                self.update_name(name)
            if value_a is not None:
                self.set_attribute(key_a, value_a)
            if value_b is not None:
                self.set_attribute(key_b, value_b)
            return
        if name is not None:
            self._name = name
        if value_a is not None:
            attributes[key_a] = value_a
        if value_b is not None:
            attributes[key_b] = value_b

    def _evict_oldest_attribute(self) -> None:
        """The SDK's rule when the attribute limit is reached: the oldest attribute goes."""
        self._uncommon = True
        self._dropped_attributes += 1
        if self._attributes:
            del self._attributes[next(iter(self._attributes))]

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            return
        tracer = self._tracer
        self._append_limited(
            "_events",
            tracer.max_events,
            lambda: Event(
                name=name,
                attributes=_bounded(tracer.max_event_attributes, attributes, tracer),
                timestamp=timestamp,
            ),
        )

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None or context is None or not context.is_valid:
            return
        tracer = self._tracer
        self._append_limited(
            "_links",
            tracer.max_links,
            lambda: trace_api.Link(
                context, _bounded(tracer.max_link_attributes, attributes, tracer)
            ),
        )

    def _append_limited(self, field: str, limit: int, make: Callable[[], Any]) -> None:
        """Append to ``_events`` or ``_links`` under the SDK's limit rule (BoundedList):
        the oldest entry makes room, each one dropped is counted in ``_dropped<field>``."""
        self._uncommon = True
        dropped = "_dropped" + field
        if limit <= 0:
            setattr(self, dropped, getattr(self, dropped) + 1)
            return
        items = self.__dict__.get(field)
        if not items:  # still the shared class default ()
            items = self.__dict__[field] = []
        if len(items) >= limit:
            del items[0]
            setattr(self, dropped, getattr(self, dropped) + 1)
        items.append(make())

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, UNSET never overrides.
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
                self._uncommon = True
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)
            self._uncommon = True

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        cls = type(exception)
        module, qualname = cls.__module__, cls.__qualname__
        event_attributes: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time_ns()
        tracer = self._tracer
        processor = tracer.processor
        if tracer.direct_queue is not None and processor._span_processors is tracer.direct_for:
            # The provider's only processor is our EncodingBatchSpanProcessor (unchanged since
            # the tracer looked): do what its on_end does, without the dispatch layers.
            if self._context[3] & 1:  # SpanContext.trace_flags, SAMPLED bit
                item = None
                c_encode = tracer.otlp._c_span_message
                pair = tracer.head_pair  # (resource, its queue-item head) of this tracer
                if self._resource is not pair[0]:
                    pair = tracer.pair_for(self._resource)
                if c_encode is not None and not self._uncommon and pair[1] is not None:
                    # The common span, encoded by one C call with its fields read here: what
                    # encode_lean_span does through four Python frames (same bytes).
                    try:
                        item = c_encode(
                            self._context,
                            self._parent,
                            self._name,
                            self._kind._value_,
                            self._start_time,
                            self._end_time,
                            self._attributes,
                            tracer.status_unset,
                            pair[1],
                        )
                    except Exception:
                        item = None  # the general encoder below decides, and reports
                if item is None:
                    item = tracer.encode_at_end(self, tracer.encode)
                tracer.emit(item)
            return
        processor._on_ending(self)
        processor.on_end(self)  # no copy: nothing changes a span once it has ended

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self._end_time is None:
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class LeanTracer:
    """Starts :class:`LeanSpan`s with the configuration of one SDK tracer."""

    def __init__(self, sdk_tracer: Any) -> None:
        limits = sdk_tracer._span_limits
        self.sdk_tracer = sdk_tracer
        self.scope = sdk_tracer._instrumentation_scope
        self.processor = sdk_tracer.span_processor
        self.sampler = sdk_tracer.sampler
        self.id_generator = sdk_tracer.id_generator
        self.max_attributes = limits.max_span_attributes
        if self.max_attributes is None:
            self.max_attributes = 1 << 31
        self.max_attribute_length = limits.max_span_attribute_length
        self.max_events = _or_unbounded(limits.max_events)
        self.max_links = _or_unbounded(limits.max_links)
        self.max_event_attributes = limits.max_event_attributes
        # Events and links use the general value length limit, spans their own (the SDK's rule).
        self.max_value_length = limits.max_attribute_length
        self.max_link_attributes = limits.max_link_attributes
        #: True when no sampler call is needed (the span keeps the attributes it starts with).
        self._default_sampler = _is_default_sampler(self.sampler)
        self.direct_for, self.direct_queue = _direct_queue(self.processor)
        from . import otlp as _otlp_fast
        from .otlp import encode_lean_span, pair_head
        from .queue import encode_at_end

        self.encode_at_end = encode_at_end
        self.encode = encode_lean_span
        self.otlp = _otlp_fast
        self.status_unset = _otlp_fast._STATUS_UNSET  # the encoded tail of a span without status
        # (resource, head) for LeanSpan.end's inline encoding; head None where the
        # (resource, scope) pair has none (the pair table is full).
        self.head_pair: tuple[Any, bytes | None] = (None, None)
        self._pair_head = pair_head
        self.emit: Callable[[Any], None] = lambda item: None
        if self.direct_for is not None:
            self.emit = self.direct_for[0].emit_encoded  # the processor's own emitter
            # Register the (resource, scope) pair now: encode_lean_span only looks it up.
            self.pair_for(sdk_tracer.resource)
        self._random_ids = type(self.id_generator) is RandomIdGenerator

    def pair_for(self, resource: Any) -> tuple[Any, bytes | None]:
        """(resource, head): the queue-item head of ``resource`` with this tracer's scope,
        registered now, and kept for the next span (one tuple: atomic for other threads)."""
        pair = (resource, self._pair_head(resource, self.scope or None))
        self.head_pair = pair
        return pair

    def start_span(
        self,
        name: str,
        context: Context,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int | None = None,
    ) -> trace_api.Span:
        """Start a span whose parent is the span in ``context``; ``attributes`` is taken over.

        The attribute values must be valid scalars already (the caller builds them); span
        limits (value length, count) apply to them as in the SDK, and later
        ``set_attribute`` calls are validated.
        """
        # An empty context (a request without propagation headers) has no parent: skip the lookup.
        parent: SpanContext | None = (
            trace_api.get_current_span(context).get_span_context() if context else None
        )
        if not self.sdk_tracer._is_enabled():
            return trace_api.NonRecordingSpan(parent or trace_api.INVALID_SPAN_CONTEXT)
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = (
                (_getrandbits(128) or _random_id(128))
                if self._random_ids
                else self.id_generator.generate_trace_id()
            )
        else:
            trace_id = parent.trace_id
        sampled: bool | None
        if self._default_sampler:
            # parentbased_always_on: record what a sampled parent (or no parent) started, drop the rest
            sampled = parent is None or parent.trace_flags.sampled or None
            trace_state = parent.trace_state if parent is not None else None
        else:
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, ())
            sampled = result.decision.is_sampled()
            trace_state = result.trace_state
            if not result.decision.is_recording():
                sampled = None
            # The SDK's rule: the span starts with the attributes the sampler returned
            # (the built-in samplers return the ones they were given).
            attributes = dict(result.attributes) if result.attributes else {}
        if parent is None:
            random_trace = self._random_ids or _is_random(self.id_generator)
        else:
            random_trace = bool(parent.trace_flags & _RANDOM_FLAG)
        flags = _FLAGS[bool(sampled), bool(random_trace)]  # None (dropped) is not sampled
        span_id = (
            (_getrandbits(64) or _random_id(64))
            if self._random_ids
            else self.id_generator.generate_span_id()
        )
        if self._random_ids:
            # What SpanContext() builds, without its Python __new__: ids from getrandbits are
            # valid by construction, and so is the trace id of a valid parent.
            span_context = _new_tuple(
                SpanContext,
                (
                    trace_id,
                    span_id,
                    False,
                    flags,
                    _DEFAULT_TRACE_STATE if trace_state is None else trace_state,
                    True,
                ),
            )
        else:
            span_context = SpanContext(trace_id, span_id, False, flags, trace_state)
        if sampled is None:
            return trace_api.NonRecordingSpan(span_context)
        limited = self.max_attribute_length is not None or len(attributes) > self.max_attributes
        span = LeanSpan(
            self,
            name,
            span_context,
            parent,
            kind,
            {} if limited else attributes,
            start_time if start_time is not None else time_ns(),
        )
        if limited:  # a length or count limit applies: the SDK's rules, one attribute at a time
            for key, value in attributes.items():
                span.set_attribute(key, value)
        if self.direct_queue is None or self.processor._span_processors is not self.direct_for:
            # (The encoding batch processor, when it is the only one, does nothing on start.)
            self.processor.on_start(span, parent_context=context)
        return span


def _direct_queue(processor: Any) -> tuple[Any, Any]:
    """(processors tuple, batch queue) when the only span processor encodes at end, else (None, None)."""
    from .queue import EncodingBatchSpanProcessor

    processors = getattr(processor, "_span_processors", None)
    if (
        isinstance(processors, tuple)
        and len(processors) == 1
        and type(processors[0]) is EncodingBatchSpanProcessor
        and callable(getattr(processors[0], "emit_encoded", None))
    ):
        return processors, processors[0]._batch_processor
    return None, None


def _bounded(limit: int | None, attributes: types.Attributes, tracer: LeanTracer) -> Any:
    """Event and link attributes as the SDK keeps them: bounded, immutable, values truncated."""
    from opentelemetry.attributes import BoundedAttributes

    return BoundedAttributes(
        limit, attributes, immutable=True, max_value_len=tracer.max_value_length
    )


def _random_id(bits: int) -> int:
    value = _getrandbits(bits)
    while not value:  # the invalid id, as RandomIdGenerator avoids it
        value = _getrandbits(bits)
    return value


def _or_unbounded(limit: int | None) -> int:
    return (1 << 31) if limit is None else limit


def _is_default_sampler(sampler: Any) -> bool:
    """``parentbased_always_on`` exactly, the SDK default, which needs no call to decide."""
    from opentelemetry.sdk.trace import sampling

    return (
        type(sampler) is sampling.ParentBased
        and sampler._root is sampling.ALWAYS_ON
        and sampler._remote_parent_sampled is sampling.ALWAYS_ON
        and sampler._remote_parent_not_sampled is sampling.ALWAYS_OFF
        and sampler._local_parent_sampled is sampling.ALWAYS_ON
        and sampler._local_parent_not_sampled is sampling.ALWAYS_OFF
    )


def lean_tracer(tracer: Any) -> LeanTracer | None:
    """A :class:`LeanTracer` for an SDK tracer; ``None`` when it cannot be one."""
    try:
        from opentelemetry.sdk.trace import Tracer
        from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics

        if type(tracer) is not Tracer or not isinstance(tracer._tracer_metrics, NoOpTracerMetrics):
            return None
        return LeanTracer(tracer)
    except Exception:  # an SDK whose internals moved: the ordinary tracer still works
        _logger.debug("lean tracer unavailable", exc_info=True)
        return None


def _is_random(id_generator: Any) -> bool:
    """``IdGenerator.is_trace_id_random()`` where the API has it (>= 1.41), else False."""
    is_random = getattr(id_generator, "is_trace_id_random", None)
    return bool(is_random()) if is_random is not None else False
