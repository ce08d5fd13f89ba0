"""Pipeline telemetry: one span and a fixed set of metrics per stage of a queue-fed pipeline.

``pipeline("document-ingest").stage("convert", item_id=..., enqueued_at=...)`` gives the
"Pipeline Throughput & Processing Health" dashboard its numbers (items per outcome,
stage duration, lag, in-flight items, queue depth) and keeps one trace per item across
queue hops (``inject``/``extract``/``carrier=``).

Design constraints, and how they are met:

- A stage must cost little (issue 4: <= 1.3x the same telemetry written by hand with the
  raw SDK). Instruments are created once per meter provider; metric attribute dicts are
  built once per (pipeline, stage, outcome) and reused; the span is started directly
  (no ``start_as_current_span`` generator).
- A pipeline made at import time, before ``init()``, must report once ``init()`` has set the
  global providers: without explicit providers the global ones are looked up at use time
  until real (non-proxy) ones appear, then cached.
- Metric attributes are only ``pipeline``, ``stage``, ``outcome`` (``queue`` for the gauge),
  each capped in distinct values (overflow becomes ``other``, with one warning). Item ids
  go on spans only.
- Telemetry never raises into the application (``_safety``); the application's own
  exceptions pass through unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from platform_otel._safety import log_once, report_internal_error

__all__ = [
    "ENQUEUED_AT_KEY",
    "Pipeline",
    "QueueObservation",
    "Stage",
    "StageRun",
    "pipeline",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Carrier key under which ``Pipeline.inject`` stores the enqueue time (epoch seconds, text).
ENQUEUED_AT_KEY = "pipeline-enqueued-at"

_SCOPE = "platform_otel.pipeline"

# Outcomes every pipeline may use without counting against the cap on custom outcomes.
_BUILTIN_OUTCOMES = ("success", "failure", "retry", "skipped", "cancelled")
_OTHER = "other"
_MAX_PIPELINES = 100  # distinct pipeline names per process
_MAX_STAGES = 50  # distinct stage names per pipeline
_MAX_QUEUES = 50  # distinct queue names per pipeline
_MAX_CUSTOM_OUTCOMES = 20  # distinct non-built-in outcomes per pipeline

# Stage durations run from milliseconds (a parse) to minutes (an OCR or LLM step).
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
# Queue lag runs from milliseconds (idle queue) to hours (a backlog).
LAG_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip

# Epoch seconds above this (year ~5138) are almost surely milliseconds or nanoseconds.
_MAX_EPOCH_S = 1e11

# Recording with an empty context keeps exemplars off in-flight adds (they explain nothing).
_NO_EXEMPLAR = otel_context.Context()

# Innermost active stage run in this thread / asyncio task.
_CURRENT: ContextVar[StageRun | None] = ContextVar("platform_otel_pipeline_run", default=None)


# --------------------------------------------------------------------------- instruments


class _Metrics:
    """The five pipeline instruments of one meter (created once per meter provider)."""

    __slots__ = ("duration", "in_flight", "items", "lag")

    def __init__(self, meter: metrics.Meter) -> None:
        self.items = meter.create_counter(
            "pipeline.items", unit="{item}", description="Items that finished a stage, by outcome."
        )
        self.duration = meter.create_histogram(
            "pipeline.stage.duration",
            unit="s",
            description="Time a stage took, per stage execution (one per batch for batches).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.lag = meter.create_histogram(
            "pipeline.lag",
            unit="s",
            description="Time from an item's enqueue to the start of the stage processing it.",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )
        self.in_flight = meter.create_up_down_counter(
            "pipeline.items.in_flight", unit="{item}", description="Items inside a stage now."
        )


class _QueueRegistry:
    """Every ``observe_queue`` of one meter provider, reported by a single observable gauge.

    One gauge per provider because the SDK returns the first instrument for a repeated
    name and silently drops the callbacks of later registrations.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        # Copy-on-write under _registry_lock: the collecting thread reads without locking.
        self._entries: dict[tuple[str, str], QueueObservation] = {}
        meter.create_observable_gauge(
            "pipeline.queue.depth",
            callbacks=[self._observe],
            unit="{item}",
            description="Items waiting in a queue, sampled at each metric collection.",
        )

    def add(self, obs: QueueObservation) -> None:
        with _registry_lock:
            self._entries = {**self._entries, obs._key: obs}

    def remove(self, obs: QueueObservation) -> bool:
        with _registry_lock:
            if self._entries.get(obs._key) is not obs:
                return False
            entries = dict(self._entries)
            del entries[obs._key]
            self._entries = entries
            return True

    def _observe(self, _options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        for obs in self._entries.values():
            value = obs._sample()
            if value is not None:
                yield metrics.Observation(value, obs._attrs)


_metrics_by_provider: weakref.WeakKeyDictionary[Any, _Metrics] = weakref.WeakKeyDictionary()
_queues_by_provider: weakref.WeakKeyDictionary[Any, _QueueRegistry] = weakref.WeakKeyDictionary()
_global_queues: _QueueRegistry | None = None
_registry_lock = threading.Lock()  # the one lock of this module; never held while running app code


def _after_fork_in_child() -> None:
    """Called in a forked child by ``init()``'s one at-fork hook (``_telemetry``)."""
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it at fork time


def _is_proxy(provider: object) -> bool:
    """True for the API's stand-in providers, used until ``set_*_provider`` is called."""
    return isinstance(provider, trace.ProxyTracerProvider) or (
        type(provider).__name__ == "_ProxyMeterProvider"
    )


def _metrics_for(mp: metrics.MeterProvider) -> _Metrics:
    try:
        found = _metrics_by_provider.get(mp)
    except TypeError:  # provider not weak-referenceable: no sharing across pipelines
        return _Metrics(mp.get_meter(_SCOPE))
    if found is None:
        with _registry_lock:
            found = _metrics_by_provider.get(mp)
            if found is None:
                found = _Metrics(mp.get_meter(_SCOPE))
                _metrics_by_provider[mp] = found
    return found


def _queue_registry(mp: metrics.MeterProvider | None) -> _QueueRegistry:
    """The registry for ``mp``, or for the global provider when ``mp`` is None.

    The global one is created on ``metrics.get_meter`` (the API proxy before ``init()``),
    which hands its callback to the real provider once one is set.
    """
    global _global_queues
    with _registry_lock:
        if mp is None:
            if _global_queues is None:
                _global_queues = _QueueRegistry(metrics.get_meter(_SCOPE))
            return _global_queues
        found = _queues_by_provider.get(mp)
        if found is None:
            found = _QueueRegistry(mp.get_meter(_SCOPE))
            _queues_by_provider[mp] = found
        return found


class _Resolved:
    """Tracer + instruments a pipeline uses; ``final`` once they come from real providers."""

    __slots__ = ("final", "metrics", "mp", "tp", "tracer")

    def __init__(self, tp: trace.TracerProvider, mp: metrics.MeterProvider, final: bool) -> None:
        self.tp = tp
        self.mp = mp
        self.final = final
        self.tracer = tp.get_tracer(_SCOPE)
        self.metrics = _metrics_for(mp)


# --------------------------------------------------------------------------- label caps


class _StageInfo:
    """Per (pipeline, stage) constants: span name, span attributes, metric attribute dicts."""

    __slots__ = ("attrs", "by_outcome", "label", "span_attrs", "span_name")

    def __init__(self, pipe_label: str, label: str) -> None:
        self.label = label
        self.span_name = f"{pipe_label} {label}"
        self.attrs: dict[str, str] = {"pipeline": pipe_label, "stage": label}
        self.span_attrs: dict[str, Any] = {"pipeline.name": pipe_label, "pipeline.stage": label}
        self.by_outcome: dict[str, dict[str, str]] = {}


def _label(value: object, what: str) -> str:
    if isinstance(value, str) and value:
        return value
    log_once(
        f"pipeline:bad-{what}:{type(value).__name__}",
        logging.WARNING,
        "platform-otel: %s name must be a non-empty str, got %r; using %r",
        what,
        value,
        str(value) or "unknown",
    )
    return str(value) or "unknown"


_pipeline_labels: set[str] = set()


def _pipeline_label(name: object) -> str:
    label = _label(name, "pipeline")
    with _registry_lock:
        if label in _pipeline_labels:
            return label
        if len(_pipeline_labels) < _MAX_PIPELINES:
            _pipeline_labels.add(label)
            return label
    log_once(
        "pipeline:too-many-pipelines",
        logging.WARNING,
        "platform-otel: more than %d distinct pipeline names; pipeline %r and later ones are "
        "reported as %r (pipeline names must not carry ids)",
        _MAX_PIPELINES,
        label,
        _OTHER,
    )
    return _OTHER


# --------------------------------------------------------------------------- enqueued_at


def _epoch_seconds(value: object) -> float | None:
    """Epoch seconds from ``enqueued_at``; None (with one warning) when unusable."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            log_once(
                "pipeline:naive-enqueued-at",
                logging.WARNING,
                "platform-otel: enqueued_at is a naive datetime; it is taken as UTC "
                "(pass an aware datetime, e.g. datetime.now(timezone.utc))",
            )
            value = value.replace(tzinfo=timezone.utc)
        seconds = value.timestamp()
    elif isinstance(value, (str, bytes)):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        try:
            seconds = float(text)
        except ValueError:
            try:
                return _epoch_seconds(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
            except ValueError:
                return _reject_enqueued_at(value, "not a number or an ISO 8601 time")
    else:
        return _reject_enqueued_at(value, "expected epoch seconds or an aware datetime")
    if not math.isfinite(seconds) or seconds < 0:
        return _reject_enqueued_at(value, "not a finite, positive epoch time")
    if seconds > _MAX_EPOCH_S:
        return _reject_enqueued_at(value, "looks like milliseconds or nanoseconds; pass seconds")
    return seconds


def _reject_enqueued_at(value: object, why: str) -> float | None:
    log_once(
        f"pipeline:bad-enqueued-at:{why}",
        logging.WARNING,
        "platform-otel: ignoring enqueued_at=%r (%s); pipeline.lag is not recorded for it",
        value,
        why,
    )
    return None


# --------------------------------------------------------------------------- pipeline


class Pipeline:
    """A named pipeline; makes stages, queue-depth gauges and carries trace context.

    Create with :func:`pipeline`. Cheap to keep at module level: nothing is resolved
    until the first stage runs.
    """

    __slots__ = (
        "__weakref__",
        "_label",
        "_mp",
        "_name",
        "_outcomes",
        "_queues",
        "_resolved",
        "_stage_labels",
        "_stages",
        "_tp",
    )

    def __init__(
        self,
        name: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._name = name
        self._label = _pipeline_label(name)
        self._tp = tracer_provider
        self._mp = meter_provider
        self._resolved: _Resolved | None = None
        self._stages: dict[str, _StageInfo] = {}
        self._stage_labels: set[str] = set()
        self._outcomes: set[str] = set(_BUILTIN_OUTCOMES)
        self._queues: set[str] = set()

    @property
    def name(self) -> str:
        """The pipeline name as reported in the ``pipeline`` metric attribute."""
        return self._label

    def __repr__(self) -> str:
        return f"Pipeline({self._label!r})"

    # ---------------------------------------------------------------- stages

    @overload
    def stage(
        self,
        name: str,
        *,
        item_id: Any = None,
        enqueued_at: Any = None,
        carrier: Any = None,
        link: bool = False,
        batch_size: int | None = None,
    ) -> Stage: ...

    @overload
    def stage(self, name: F) -> F: ...

    def stage(
        self,
        name: Any,
        *,
        item_id: Any = None,
        enqueued_at: Any = None,
        carrier: Any = None,
        link: bool = False,
        batch_size: int | None = None,
    ) -> Any:
        """A stage: use as ``with``/``async with`` (yields a :class:`StageRun`) or as a decorator.

        Bare ``@pipe.stage`` (no call) names the stage after the decorated function.

        ``item_id`` goes on the span (never on metrics). ``enqueued_at`` (epoch seconds,
        aware datetime or ISO 8601 text) gives ``pipeline.lag``. ``carrier`` (message headers
        filled by :meth:`inject`) makes the span continue the producer's trace, or with
        ``link=True`` start a new trace linked to it. ``batch_size=n`` makes the stage one
        span for ``n`` items. In decorator form each of ``item_id``, ``enqueued_at`` and
        ``carrier`` may be a callable receiving the decorated function's arguments.
        """
        if callable(name) and not isinstance(name, str):
            return Stage(self, getattr(name, "__name__", "stage"), None, None, None, False, None)(
                name
            )
        return Stage(self, name, item_id, enqueued_at, carrier, link, batch_size)

    def batch(
        self,
        name: str,
        *,
        size: int,
        item_id: Any = None,
        enqueued_at: Any = None,
        carrier: Any = None,
        link: bool = False,
    ) -> Stage:
        """A batch stage: one span for ``size`` items; counts per outcome via ``add_items``."""
        return Stage(self, name, item_id, enqueued_at, carrier, link, size)

    def current_stage(self) -> StageRun:
        """The innermost running stage of this pipeline here, or an inert handle if none.

        For decorated functions, which have no ``with ... as run``: call
        ``pipe.current_stage().set_outcome("skipped")`` inside them.
        """
        run = _CURRENT.get()
        while run is not None:
            if run._pipe is self:
                return run
            run = run._prev
        return _INERT

    # ---------------------------------------------------------------- queues

    def observe_queue(self, queue: str, *, depth: Callable[[], float | None]) -> QueueObservation:
        """Report ``depth()`` as ``pipeline.queue.depth{pipeline, queue}`` at each collection.

        ``depth`` runs on the metric reader's thread; returning None skips one sample; an
        exception is logged once and skipped. Registering the same queue name again
        replaces the earlier callable. ``.unregister()`` stops reporting.
        """
        label = self._capped(_label(queue, "queue"), self._queues, _MAX_QUEUES, "queue")
        obs = QueueObservation(self, label, depth)
        try:
            registry = _queue_registry(self._mp)
            registry.add(obs)
            obs._registry = registry
        except Exception:
            report_internal_error("pipeline.observe_queue")
        return obs

    # ---------------------------------------------------------------- propagation

    def inject(
        self, carrier: MutableMapping[str, str] | None = None, *, enqueued_at: Any = True
    ) -> MutableMapping[str, str]:
        """Write the current trace context (W3C ``traceparent``, ``tracestate``, ``baggage``)
        into ``carrier`` (a new dict when None) and return it.

        ``enqueued_at=True`` (default) also stores now, as epoch seconds, under
        ``"pipeline-enqueued-at"`` so a consumer's ``stage(carrier=...)`` records lag without
        extra code; pass a time to store that instead, or ``False`` to store none.
        """
        if carrier is None:
            carrier = {}
        try:
            from opentelemetry import propagate  # loads propagator entry points: not at import

            propagate.inject(carrier)
            if enqueued_at is True:
                carrier[ENQUEUED_AT_KEY] = f"{time.time():.6f}"
            elif enqueued_at is not False and enqueued_at is not None:
                seconds = _epoch_seconds(enqueued_at)
                if seconds is not None:
                    carrier[ENQUEUED_AT_KEY] = f"{seconds:.6f}"
        except Exception:
            report_internal_error("pipeline.inject")
        return carrier

    def extract(self, carrier: Mapping[str, Any]) -> otel_context.Context:
        """The context (remote parent span and baggage) that ``inject`` wrote into ``carrier``."""
        try:
            from opentelemetry import propagate

            return propagate.extract(carrier)
        except Exception:
            report_internal_error("pipeline.extract")
            return otel_context.Context()

    # ---------------------------------------------------------------- internals

    def _resolve(self) -> _Resolved:
        """Tracer and instruments; re-checked per use until both providers are real."""
        resolved = self._resolved
        if resolved is not None and resolved.final:
            return resolved
        tp = self._tp if self._tp is not None else trace.get_tracer_provider()
        mp = self._mp if self._mp is not None else metrics.get_meter_provider()
        if resolved is None or resolved.tp is not tp or resolved.mp is not mp:
            final = not (_is_proxy(tp) or _is_proxy(mp))
            resolved = _Resolved(tp, mp, final)
            self._resolved = resolved
        return resolved

    def _stage_info(self, name: str) -> _StageInfo:
        info = self._stages.get(name)
        if info is None:
            label = self._capped(_label(name, "stage"), self._stage_labels, _MAX_STAGES, "stage")
            with _registry_lock:
                info = self._stages.get(label)
                if info is None:
                    info = self._stages[label] = _StageInfo(self._label, label)
                if len(self._stages) <= 2 * _MAX_STAGES:  # bounded memo of raw name -> label
                    self._stages[name] = info
        return info

    def _outcome_attrs(self, info: _StageInfo, outcome: str) -> dict[str, str]:
        attrs = info.by_outcome.get(outcome)
        if attrs is None:
            label = _label(outcome, "outcome")
            if label not in self._outcomes:
                label = self._capped(
                    label, self._outcomes, _MAX_CUSTOM_OUTCOMES + len(_BUILTIN_OUTCOMES), "outcome"
                )
            attrs = {**info.attrs, "outcome": label}
            if len(info.by_outcome) < _MAX_CUSTOM_OUTCOMES * 2 + len(_BUILTIN_OUTCOMES):
                info.by_outcome[outcome] = attrs
        return attrs

    def _capped(self, label: str, seen: set[str], cap: int, what: str) -> str:
        """``label`` if it is known or there is room for it, else ``"other"`` (warned once)."""
        with _registry_lock:
            if label in seen:
                return label
            if len(seen) < cap:
                seen.add(label)
                return label
        log_once(
            f"pipeline:too-many-{what}s:{self._label}",
            logging.WARNING,
            "platform-otel: pipeline %r has more than %d distinct %s values; %r and later new "
            "ones are reported as %r (metric attributes must not carry ids)",
            self._label,
            cap,
            what,
            label,
            _OTHER,
        )
        return _OTHER


_pipelines: weakref.WeakValueDictionary[tuple[Any, ...], Pipeline] = weakref.WeakValueDictionary()


def pipeline(
    name: str,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Pipeline:
    """The :class:`Pipeline` called ``name`` (the same object for the same name and providers).

    Without providers it reports through the global OpenTelemetry providers that
    ``platform_otel.init()`` sets, also when created before ``init()`` runs.
    """
    key = (name, tracer_provider, meter_provider)
    try:
        found = _pipelines.get(key)
        if found is None:
            with _registry_lock:
                found = _pipelines.get(key)
            if found is None:
                found = Pipeline(
                    name, tracer_provider=tracer_provider, meter_provider=meter_provider
                )
                with _registry_lock:
                    found = _pipelines.setdefault(key, found)
        return found
    except TypeError:  # unhashable name or provider: no caching
        return Pipeline(name, tracer_provider=tracer_provider, meter_provider=meter_provider)


# --------------------------------------------------------------------------- stage


class Stage:
    """A stage of a pipeline: a context manager (sync and async) and a decorator.

    Each ``with`` / decorated call is one *run*: one span, and one item (or ``batch_size``
    items) counted under its outcome. ``pipe.stage(...)`` is cheap; make one per item.
    """

    __slots__ = (
        "_batch",
        "_carrier",
        "_enqueued_at",
        "_item_id",
        "_last",
        "_link",
        "_name",
        "_pipe",
    )

    def __init__(
        self,
        pipe: Pipeline,
        name: str,
        item_id: Any,
        enqueued_at: Any,
        carrier: Any,
        link: bool,
        batch_size: int | None,
    ) -> None:
        self._pipe = pipe
        self._name = name
        self._item_id = item_id
        self._enqueued_at = enqueued_at
        self._carrier = carrier
        self._link = link
        self._batch = batch_size
        self._last: StageRun | None = None

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> StageRun:
        run = self._start(None, None)
        self._last = run
        run._activate()
        return run

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        run = _CURRENT.get()
        if run is None or run._stage is not self:
            run = self._last  # the body left a foreign context attached: best effort
        if run is not None:
            run._deactivate()
            run._finish(exc)

    async def __aenter__(self) -> StageRun:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # ---------------------------------------------------------------- decorator

    def __call__(self, fn: F) -> F:
        """Wrap ``fn`` (sync, async, generator or async generator): one run per call.

        For (async) generators the run spans the whole iteration and ends when the
        generator is exhausted, raises, or is closed early (``break``, ``aclose()``).
        """
        import inspect

        if inspect.isasyncgenfunction(fn):
            wrapper: Callable[..., Any] = self._wrap_async_gen(fn)
        elif inspect.iscoroutinefunction(fn):
            wrapper = self._wrap_async(fn)
        elif inspect.isgeneratorfunction(fn):
            wrapper = self._wrap_gen(fn)
        else:
            wrapper = self._wrap_sync(fn)
        return cast(F, functools.wraps(fn)(wrapper))

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = self._start(args, kwargs)
            run._activate()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                run._deactivate()
                run._finish(exc)
                raise
            run._deactivate()
            run._finish(None)
            return result

        return wrapper

    def _wrap_async(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = self._start(args, kwargs)
            run._activate()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                run._deactivate()
                run._finish(exc)
                raise
            run._deactivate()
            run._finish(None)
            return result

        return wrapper

    def _wrap_gen(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # The span is current only while the generator body runs (between resumptions),
        # never across a ``yield``: the consumer's code is not part of the stage, and a
        # context attached in one frame is never detached in another.
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = self._start(args, kwargs)
            run._activate()
            try:
                gen = fn(*args, **kwargs)
            finally:
                run._deactivate()
            to_send: Any = None
            to_throw: BaseException | None = None
            try:
                while True:
                    run._activate()
                    try:
                        if to_throw is not None:
                            exc, to_throw = to_throw, None
                            item = gen.throw(exc)
                        else:
                            item = gen.send(to_send)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    finally:
                        run._deactivate()
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        run._activate()
                        try:
                            gen.close()
                        finally:
                            run._deactivate()
                        raise
                    except BaseException as exc:
                        to_throw = exc
            except BaseException as exc:
                run._finish(exc)
                raise
            run._finish(None)
            return result

        return wrapper

    def _wrap_async_gen(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = self._start(args, kwargs)
            run._activate()
            try:
                agen = fn(*args, **kwargs)
            finally:
                run._deactivate()
            to_send: Any = None
            to_throw: BaseException | None = None
            try:
                while True:
                    run._activate()
                    try:
                        if to_throw is not None:
                            exc, to_throw = to_throw, None
                            item = await agen.athrow(exc)
                        else:
                            item = await agen.asend(to_send)
                    except StopAsyncIteration:
                        break
                    finally:
                        run._deactivate()
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        run._activate()
                        try:
                            await agen.aclose()
                        finally:
                            run._deactivate()
                        raise
                    except BaseException as exc:
                        to_throw = exc
            except BaseException as exc:
                run._finish(exc)
                raise
            run._finish(None)

        return wrapper

    # ---------------------------------------------------------------- run start

    def _start(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> StageRun:
        """Start a run: span started (not yet current), in-flight and lag recorded."""
        pipe = self._pipe
        run = StageRun(pipe, self)
        try:
            resolved = pipe._resolved
            if resolved is None or not resolved.final:
                resolved = pipe._resolve()
            info = pipe._stages.get(self._name) or pipe._stage_info(self._name)
            item_id, enqueued_at, carrier = self._item_id, self._enqueued_at, self._carrier
            if args is not None:
                item_id, enqueued_at, carrier = _call_args(
                    (item_id, enqueued_at, carrier), args, kwargs
                )

            size = 1
            attrs = info.span_attrs.copy()
            if self._batch is not None:
                size = _batch_size(self._batch)
                attrs["pipeline.batch.size"] = size
            if item_id is not None:
                attrs["pipeline.item.id"] = (
                    item_id if isinstance(item_id, (str, int)) else str(item_id)
                )

            parent: otel_context.Context | None = None
            links: list[Link] | None = None
            kind = SpanKind.INTERNAL
            if carrier is not None:
                kind = SpanKind.CONSUMER
                parent, links = _from_carrier(pipe, carrier, self._link)
                if enqueued_at is None:
                    enqueued_at = carrier.get(ENQUEUED_AT_KEY)

            lags: list[float] | None = None
            if enqueued_at is not None:
                kind = SpanKind.CONSUMER
                now = time.time()
                if isinstance(enqueued_at, (list, tuple)):
                    stamps = [_epoch_seconds(e) for e in enqueued_at]
                else:
                    stamps = [_epoch_seconds(enqueued_at)]
                lags = [max(0.0, now - s) for s in stamps if s is not None]
                if lags:
                    attrs["pipeline.lag"] = max(lags)

            run._span = span = resolved.tracer.start_span(
                info.span_name, context=parent, kind=kind, attributes=attrs, links=links
            )
            run._t0 = time.perf_counter()
            run._ctx = trace.set_span_in_context(span, parent)
            run._info = info
            run._size = size
            m = resolved.metrics
            m.in_flight.add(size, info.attrs, context=_NO_EXEMPLAR)
            run._metrics = m  # set once in_flight is up, so finish brings it back down
            if lags:
                for lag in lags:  # context: exemplars point at the stage span
                    m.lag.record(lag, info.attrs, context=run._ctx)
        except Exception:
            report_internal_error("pipeline.stage.start")
        return run


def _call_args(
    values: tuple[Any, ...], args: tuple[Any, ...], kwargs: dict[str, Any] | None
) -> tuple[Any, ...]:
    """Decorator form: a callable ``item_id``/``enqueued_at``/``carrier`` gets the call's args."""
    out = []
    for value in values:
        if callable(value) and not isinstance(value, (Mapping, datetime)):
            try:
                value = value(*args, **(kwargs or {}))
            except Exception:
                log_once(
                    f"pipeline:arg-callable:{getattr(value, '__qualname__', value)!s}",
                    logging.WARNING,
                    "platform-otel: a stage's item_id/enqueued_at/carrier callable raised; "
                    "that value is left out of the telemetry",
                    exc_info=True,
                )
                value = None
        out.append(value)
    return tuple(out)


def _batch_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    log_once(
        "pipeline:bad-batch-size",
        logging.WARNING,
        "platform-otel: batch size must be an int >= 0, got %r; counting 1 item",
        value,
    )
    return 1


def _from_carrier(
    pipe: Pipeline, carrier: Mapping[str, Any], link: bool
) -> tuple[otel_context.Context | None, list[Link] | None]:
    """Parent context (and links) for a consumer stage from a producer's carrier."""
    extracted = pipe.extract(carrier)
    producer = trace.get_current_span(extracted).get_span_context()
    if not producer.is_valid:
        return None, None  # nothing to continue: an ordinary child of the current span
    if link:
        # New trace (no parent span) that keeps the producer's baggage, linked to the producer.
        return trace.set_span_in_context(trace.INVALID_SPAN, extracted), [Link(producer)]
    return extracted, None


# --------------------------------------------------------------------------- run handle


class StageRun:
    """One execution of a stage: what ``with pipe.stage(...) as run`` gives you.

    The outcome is ``success`` unless set here or an exception escapes (``failure``;
    ``cancelled`` for ``asyncio.CancelledError``). An outcome set explicitly wins over the
    exception default, so ``set_outcome("retry"); raise`` counts a retry.
    """

    __slots__ = (
        "_counts",
        "_ctx",
        "_ctx_token",
        "_done",
        "_explicit",
        "_info",
        "_metrics",
        "_outcome",
        "_pipe",
        "_prev",
        "_run_token",
        "_size",
        "_span",
        "_stage",
        "_t0",
    )

    def __init__(self, pipe: Pipeline | None, stage: Stage | None) -> None:
        self._pipe = pipe
        self._stage = stage
        self._span: trace.Span | None = None
        self._ctx: otel_context.Context | None = None
        self._ctx_token: object = None
        self._run_token: Token[StageRun | None] | None = None
        self._prev: StageRun | None = None
        self._info: _StageInfo | None = None
        self._metrics: _Metrics | None = None
        self._outcome = "success"
        self._explicit = False
        self._counts: dict[str, int] | None = None
        self._size = 1
        self._t0 = 0.0
        self._done = False

    @property
    def span(self) -> trace.Span:
        """The stage's span (a non-recording span when telemetry is off or failed)."""
        return self._span if self._span is not None else trace.INVALID_SPAN

    @property
    def outcome(self) -> str:
        """The outcome the remaining items will be counted under when the run ends."""
        return self._outcome

    def set_outcome(self, outcome: str) -> None:
        """Count this run's (remaining) items under ``outcome``, e.g. ``retry``, ``skipped``."""
        self._outcome = outcome
        self._explicit = True

    def set_attribute(self, key: str, value: Any) -> None:
        """Set a span attribute (spans only: metric attributes are fixed)."""
        span = self._span
        if span is not None and value is not None:
            try:
                span.set_attribute(key, value)
            except Exception:
                report_internal_error("pipeline.set_attribute")

    def add_items(self, n: int, *, outcome: str = "success") -> None:
        """Batch stages: count ``n`` items under ``outcome``; the rest get the run's outcome."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            log_once(
                "pipeline:bad-add-items",
                logging.WARNING,
                "platform-otel: add_items needs an int >= 0, got %r; ignored",
                n,
            )
            return
        counts = self._counts
        if counts is None:
            counts = self._counts = {}
        counts[outcome] = counts.get(outcome, 0) + n

    # ---------------------------------------------------------------- internals

    def _activate(self) -> None:
        if self._ctx is not None:
            self._ctx_token = otel_context.attach(self._ctx)
        self._prev = _CURRENT.get()
        self._run_token = _CURRENT.set(self)

    def _deactivate(self) -> None:
        token, self._run_token = self._run_token, None
        if token is not None:
            with contextlib.suppress(ValueError):  # reset from another context: leave it
                _CURRENT.reset(token)
        ctx_token, self._ctx_token = self._ctx_token, None
        if ctx_token is not None:
            otel_context.detach(ctx_token)  # type: ignore[arg-type]

    def _finish(self, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        span, info, m = self._span, self._info, self._metrics
        if span is None or info is None or m is None:
            if span is not None:  # start failed half-way: at least end the span
                span.end()
            return
        try:
            duration = time.perf_counter() - self._t0
            outcome = self._outcome
            if exc is not None and not isinstance(exc, GeneratorExit):
                if _is_cancelled(exc):
                    if not self._explicit:
                        outcome = "cancelled"
                else:
                    if not self._explicit:
                        outcome = "failure"
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
                    span.set_attribute("error.type", type(exc).__qualname__)
                    span.record_exception(exc)
            elif outcome == "failure":
                span.set_status(Status(StatusCode.ERROR, "outcome failure"))
            pipe = self._pipe
            assert pipe is not None
            attrs = pipe._outcome_attrs(info, outcome)
            ctx = self._ctx  # exemplars point at the stage span, not at its parent
            counts = self._counts
            if counts is None:
                m.items.add(self._size, attrs, context=ctx)
                span.set_attribute("pipeline.outcome", attrs["outcome"])
            else:
                remaining = self._size - sum(counts.values())
                if remaining > 0:
                    counts[outcome] = counts.get(outcome, 0) + remaining
                for name, n in counts.items():
                    if n:
                        m.items.add(n, pipe._outcome_attrs(info, name), context=ctx)
                span.set_attribute("pipeline.outcome", attrs["outcome"])
                span.set_attribute(
                    "pipeline.batch.outcomes",
                    ",".join(f"{k}={v}" for k, v in sorted(counts.items()) if v),
                )
            m.duration.record(duration, attrs, context=ctx)
            m.in_flight.add(-self._size, info.attrs, context=_NO_EXEMPLAR)
            span.end()
        except Exception:
            report_internal_error("pipeline.stage.finish")


def _is_cancelled(exc: BaseException) -> bool:
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


_INERT = StageRun(None, None)


# --------------------------------------------------------------------------- queue handle


class QueueObservation:
    """A registered queue-depth callable; ``unregister()`` stops reporting it."""

    __slots__ = ("_attrs", "_depth", "_key", "_registry")

    def __init__(self, pipe: Pipeline, queue: str, depth: Callable[[], float | None]) -> None:
        self._key = (pipe._label, queue)
        self._attrs = {"pipeline": pipe._label, "queue": queue}
        self._depth = depth
        self._registry: _QueueRegistry | None = None

    def unregister(self) -> bool:
        """Stop reporting this queue; False if it was already unregistered or replaced."""
        registry, self._registry = self._registry, None
        return registry.remove(self) if registry is not None else False

    def _sample(self) -> float | None:
        try:
            value = self._depth()
        except Exception:
            log_once(
                f"pipeline:queue-depth:{self._key}",
                logging.WARNING,
                "platform-otel: queue depth callable for %s raised; the sample is skipped "
                "(further errors from it are not logged)",
                self._key,
                exc_info=True,
            )
            return None
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            log_once(
                f"pipeline:queue-depth-type:{self._key}",
                logging.WARNING,
                "platform-otel: queue depth callable for %s returned %r, not a number; skipped",
                self._key,
                value,
            )
            return None
