"""Every private OpenTelemetry name platform-otel uses, listed and checked in one place.

Why: the fast request path (``platform_otel._fast``) reads a few SDK internals (a
tracer's span limits, the batch processor's queue, a metric reader's collect hook).
Those names can move in any SDK release without notice. Instead of finding out from
a broken request path, ``init()`` calls :func:`check` once: it builds small probe
objects of the installed SDK (a tracer provider, a batch span processor, a meter
provider with a reader, a logger provider) and looks up every name in
:data:`REQUIREMENTS` on them. If any is missing or has another shape, the fast path
stays off for the process, one warning names the first missing name, and the SDK
path runs (the same telemetry, more CPU per request); ``platform-otel doctor`` shows
the reason.

Rules that keep this true (``tests/test_otel_private.py`` enforces them):

* a private ``opentelemetry`` name (attribute, module or logger name starting with
  ``_``) is used only inside ``platform_otel._fast`` or through a helper function of
  this module, and every such name is listed in :data:`REQUIREMENTS`;
* the helpers below, used outside the fast path, degrade to doing nothing when their
  name is missing: they only refine behaviour (fork identity, metric reset), never
  carry telemetry.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "REQUIREMENTS",
    "Requirement",
    "cap_exporter_timeout",
    "check",
    "has_span_processors",
    "instrumented_by_official",
    "reset_metric_state",
    "set_resource_attributes",
    "update_provider_resource",
]

_logger = logging.getLogger("platform_otel")


@dataclass(frozen=True)
class Requirement:
    """One private name: ``attr`` looked up on the probe object ``probe``.

    ``kind`` is ``"attr"`` (present), ``"callable"`` (present and callable),
    ``"module"`` (``probe`` is an importable module path and ``attr`` a name in it,
    or ``""`` for the module itself), a shape check name from :data:`_SHAPES`, or
    ``"helper"`` (read only by a helper below that does nothing without it: not checked).
    """

    probe: str
    attr: str
    kind: str = "attr"

    @property
    def name(self) -> str:
        return f"{self.probe}.{self.attr}" if self.attr else self.probe


_R = Requirement

# probe names: see _build_probes()
REQUIREMENTS: tuple[Requirement, ...] = (
    # -- lean spans (_fast/trace.py) -----------------------------------------------
    _R("Tracer", "_span_limits"),
    _R("Tracer", "_instrumentation_scope"),
    _R("Tracer", "_is_enabled", "callable"),
    _R("Tracer", "_tracer_metrics"),
    _R("opentelemetry.sdk.trace._tracer_metrics", "NoOpTracerMetrics", "module"),
    _R("TracerProvider", "_active_span_processor"),
    _R("SynchronousMultiSpanProcessor", "_span_processors", "tuple"),
    _R("SynchronousMultiSpanProcessor", "_on_ending", "callable"),
    _R("ParentBased", "_root"),
    _R("ParentBased", "_remote_parent_sampled"),
    _R("ParentBased", "_remote_parent_not_sampled"),
    _R("ParentBased", "_local_parent_sampled"),
    _R("ParentBased", "_local_parent_not_sampled"),
    # ReadableSpan's properties read these fields; LeanSpan stores them under the same names.
    *(
        _R("ReadableSpan", field)
        for field in (
            "_name",
            "_context",
            "_parent",
            "_kind",
            "_attributes",
            "_start_time",
            "_end_time",
            "_events",
            "_links",
            "_status",
            "_resource",
            "_instrumentation_scope",
            "_instrumentation_info",
        )
    ),
    _R("SpanKind", "_value_"),
    _R("StatusCode", "_value_"),
    # -- the batch queue hand-off (_fast/queue.py) ------------------------------------
    _R("BatchSpanProcessor", "_batch_processor"),
    _R("BatchProcessor", "_queue", "deque"),
    _R("BatchProcessor", "_pid"),
    _R("BatchProcessor", "_shutdown"),
    _R("BatchProcessor", "_max_queue_size"),
    _R("BatchProcessor", "_max_export_batch_size"),
    _R("BatchProcessor", "_worker_awaken"),
    _R("BatchProcessor", "_exporting"),
    _R("BatchProcessor", "_exporter"),
    _R("BatchProcessor", "_metrics"),
    _R("opentelemetry.sdk._shared_internal", "", "module"),  # logger name muted per item
    # -- lean histogram (_fast/metrics.py) ----------------------------------------------
    _R("Meter", "_instrumentation_scope"),
    _R("Meter", "_is_enabled", "callable"),
    _R("Meter", "_measurement_consumer"),
    _R("MeasurementConsumer", "_sdk_config"),
    _R("MeasurementConsumer", "_reader_storages", "dict"),
    _R("MetricReader", "_collect", "callable"),
    _R("MetricReader", "_instrument_class_aggregation", "dict"),
    _R("MetricReader", "_instrument_class_temporality", "dict"),
    _R("opentelemetry.sdk.metrics._internal.instrument", "_Histogram", "module"),
    _R("opentelemetry.sdk.metrics._internal.exemplar", "Exemplar", "module"),
    _R("opentelemetry.sdk.metrics._internal.exemplar", "AlwaysOnExemplarFilter", "module"),
    _R("opentelemetry.sdk.metrics._internal.exemplar", "AlwaysOffExemplarFilter", "module"),
    _R("opentelemetry.sdk.metrics._internal.exemplar", "TraceBasedExemplarFilter", "module"),
    _R("opentelemetry.sdk.metrics._internal.point", "Histogram", "module"),
    # -- lean log records (_fast/logs.py) -----------------------------------------------
    _R("LoggerProvider", "_multi_log_record_processor"),
    _R("LoggerProvider", "_logger_metrics"),
    _R("SynchronousMultiLogRecordProcessor", "_log_record_processors", "tuple"),
    _R("opentelemetry.sdk._logs._internal", "SynchronousMultiLogRecordProcessor", "module"),
    _R("opentelemetry.sdk._logs._internal._logger_metrics", "NoOpLoggerMetrics", "module"),
    _R("Logger", "_resource"),
    _R("Logger", "_instrumentation_scope"),
    _R("Logger", "_is_enabled", "callable"),
    _R("Logger", "_log_record_limits"),
    _R("BatchLogRecordProcessor", "_batch_processor"),
    # -- outside the fast path, through the helpers below ---------------------------
    _R("TracerProvider", "_update_resource", "callable"),
    _R("MeasurementConsumer", "_lock"),
    _R("MeasurementConsumer", "add_metric_reader", "helper"),
    _R(
        "opentelemetry.sdk.metrics._internal.metric_reader_storage", "MetricReaderStorage", "helper"
    ),
    _R("MetricReader", "_export_lock", "helper"),
    _R("MeterProvider", "_measurement_consumer"),
    _R("Resource", "_attributes"),
    # Read through the helpers only, each a refinement that does nothing when the name is
    # missing: listed so that every private name is here, not checked at init().
    _R("OTLPSpanExporter", "_timeout", "helper"),
    _R("OTLPSpanExporter", "_client", "helper"),
    _R("FastAPI", "_is_instrumented_by_opentelemetry", "helper"),
    # Private module paths named as strings elsewhere; a moved one only makes its use a
    # no-op: _sdk_env's import hook (modules that raise on bad variables) and the logging
    # integration's list of OpenTelemetry's own log handlers (never exported back).
    _R("opentelemetry.sdk._logs._internal", "", "helper"),
    _R("opentelemetry.instrumentation._semconv", "", "helper"),
    # The API's runtime context, read by _fast/context.current_var() through getattr: where
    # either is missing it returns None and callers use the public context functions.
    _R("opentelemetry.context", "_RUNTIME_CONTEXT", "helper"),
    _R("ContextVarsRuntimeContext", "_current_context", "helper"),
)

# The logs SDK and API live under ``opentelemetry.sdk._logs`` / ``opentelemetry._logs``:
# underscored, but the only import path the SDK offers for logs. They are imported the
# ordinary way (a missing module there means no logs SDK at all) and are not listed.

_SHAPES: dict[str, Callable[[Any], bool]] = {
    "tuple": lambda v: isinstance(v, tuple),
    "dict": lambda v: isinstance(v, dict),
    "deque": lambda v: type(v).__name__ == "deque" and getattr(v, "maxlen", None) is not None,
}


class _NullSpanExporter:
    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# Probe objects stay referenced: SDK 1.40's batch processors register an at-fork callback
# through a weak reference and fail loudly in every forked child once the processor is gone.
# Shut down, a kept probe costs a child one thread that exits at once. (One set per process:
# check() caches its result.)
_kept_probes: list[dict[str, Any]] = []


def _build_probes() -> dict[str, Any]:
    """Small, private instances of the installed SDK's classes (nothing global, shut down)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind, StatusCode

    probes: dict[str, Any] = {"SpanKind": SpanKind.SERVER, "StatusCode": StatusCode.OK}
    resource = Resource.create({"service.name": "probe"})
    probes["Resource"] = resource
    # Every limit and batch setting given: the probes never read (possibly bad) variables.
    limits = SpanLimits(
        max_span_attributes=128,
        max_events=128,
        max_links=128,
        max_event_attributes=128,
        max_link_attributes=128,
        max_attributes=128,
        max_attribute_length=SpanLimits.UNSET,
        max_span_attribute_length=SpanLimits.UNSET,
    )
    batch = {
        "schedule_delay_millis": 60_000,
        "max_queue_size": 2048,
        "max_export_batch_size": 512,
        "export_timeout_millis": 30_000,
    }
    tracer_provider = TracerProvider(resource=resource, span_limits=limits, shutdown_on_exit=False)
    probes["TracerProvider"] = tracer_provider
    probes["Tracer"] = tracer_provider.get_tracer("platform_otel.probe")
    probes["SynchronousMultiSpanProcessor"] = getattr(
        tracer_provider, "_active_span_processor", None
    )
    probes["ParentBased"] = ParentBased(TraceIdRatioBased(1.0))
    probes["ReadableSpan"] = ReadableSpan(name="probe", resource=resource)
    bsp = BatchSpanProcessor(_NullSpanExporter(), **batch)  # type: ignore[arg-type]
    try:
        probes["BatchSpanProcessor"] = bsp
        probes["BatchProcessor"] = getattr(bsp, "_batch_processor", None)
    finally:
        bsp.shutdown()  # type: ignore[no-untyped-call]
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], resource=resource, shutdown_on_exit=False
    )
    probes["MeterProvider"] = meter_provider
    probes["Meter"] = meter_provider.get_meter("platform_otel.probe")
    probes["MeasurementConsumer"] = getattr(meter_provider, "_measurement_consumer", None)
    probes["MetricReader"] = reader
    try:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        probes["LoggerProvider"] = logger_provider
        probes["Logger"] = logger_provider.get_logger("platform_otel.probe")
        probes["SynchronousMultiLogRecordProcessor"] = getattr(
            logger_provider, "_multi_log_record_processor", None
        )
        blrp = BatchLogRecordProcessor(_NullSpanExporter(), **batch)  # type: ignore[arg-type]
        probes["BatchLogRecordProcessor"] = blrp
        blrp.shutdown()  # type: ignore[no-untyped-call]
        logger_provider.shutdown()
    except Exception:
        pass  # each log requirement then reports its own probe as missing
    meter_provider.shutdown()
    tracer_provider.shutdown()
    _kept_probes.append(probes)
    return probes


def _missing(req: Requirement, probes: dict[str, Any]) -> str | None:
    """Why ``req`` does not hold on the installed SDK, or None."""
    if req.kind == "helper":
        return None
    if req.kind == "module":
        try:
            module = importlib.import_module(req.probe)
        except Exception as exc:
            return f"cannot import {req.probe} ({type(exc).__name__})"
        if req.attr and not hasattr(module, req.attr):
            return f"{req.name} not found"
        return None
    target = probes.get(req.probe)
    if target is None:
        return f"no {req.probe} to look at"
    if not hasattr(target, req.attr):
        return f"{req.name} not found"
    value = getattr(target, req.attr)
    if req.kind == "callable" and not callable(value):
        return f"{req.name} is not callable"
    shape = _SHAPES.get(req.kind)
    if shape is not None and not shape(value):
        return f"{req.name} has another shape ({type(value).__name__})"
    return None


_lock = threading.Lock()
_result: list[str] | None = None


def check(requirements: Sequence[Requirement] | None = None) -> list[str]:
    """Problems with the listed private names on the installed SDK; [] when all hold.

    Cached per process for the default list (the installed SDK does not change).
    """
    global _result
    if requirements is None:
        with _lock:
            if _result is None:
                _result = _check(REQUIREMENTS)
            return list(_result)
    return _check(requirements)


def _check(requirements: Sequence[Requirement]) -> list[str]:
    try:
        probes = _build_probes()
    except Exception as exc:  # an SDK too different to even build the probes
        return [f"cannot build SDK probes ({exc!r})"]
    problems = []
    for req in requirements:
        why = _missing(req, probes)
        if why is not None:
            problems.append(why)
    return problems


def forget() -> None:
    """Drop the cached result (tests that simulate a moved name)."""
    global _result
    with _lock:
        _result = None


# -- helpers for the code outside the fast path: no-ops where a name is missing -----------


def has_span_processors(tracer_provider: Any) -> bool:
    """Whether an SDK tracer provider already has span processors (someone configured it)."""
    multi = getattr(tracer_provider, "_active_span_processor", None)
    return bool(getattr(multi, "_span_processors", ()))


def update_provider_resource(provider: Any, resource: Any) -> bool:
    """Merge ``resource`` into an SDK provider's own (its after-fork copy); False if unsupported."""
    update = getattr(provider, "_update_resource", None)
    if update is None:
        return False
    update(resource)
    return True


def set_resource_attributes(resource: Any, attributes: dict[str, Any]) -> bool:
    """Replace a ``Resource``'s attributes in place (objects that already hold it see the
    new identity after a fork); False if the SDK stores them elsewhere."""
    from opentelemetry.attributes import BoundedAttributes

    if not hasattr(resource, "_attributes"):
        return False
    resource._attributes = BoundedAttributes(attributes=attributes)
    return True


def cap_exporter_timeout(exporter: Any, remaining: float) -> None:
    """Shorten an OTLP exporter's own retry budget to ``remaining`` seconds (bounded shutdown)."""
    # gRPC exporters keep the budget on themselves, HTTP ones on their client.
    for holder in (exporter, getattr(exporter, "_client", None)):
        if holder is not None and isinstance(getattr(holder, "_timeout", None), int | float):
            holder._timeout = min(float(holder._timeout), remaining)


def instrumented_by_official(app: Any) -> bool:
    """Whether ``FastAPIInstrumentor.instrument_app`` instrumented ``app`` (its own marker)."""
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def reset_metric_state(meter_provider: Any) -> bool:
    """Forget every aggregation a forked child inherited (new start time, zero counts)."""
    consumer = getattr(meter_provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if consumer is None or not isinstance(storages, dict) or not hasattr(consumer, "_lock"):
        return False
    consumer._lock = threading.Lock()
    readers = list(storages)
    add_metric_reader = getattr(consumer, "add_metric_reader", None)
    if add_metric_reader is not None:
        for reader in readers:
            add_metric_reader(reader)  # replaces the reader's storage with an empty one
    else:  # SDK < 1.43: what SynchronousMeasurementConsumer.__init__ does
        try:
            from opentelemetry.sdk.metrics._internal.metric_reader_storage import (
                MetricReaderStorage,
            )

            consumer._reader_storages = {
                reader: MetricReaderStorage(
                    consumer._sdk_config,
                    reader._instrument_class_temporality,
                    reader._instrument_class_aggregation,
                )
                for reader in readers
            }
        except Exception:
            return False
    for reader in readers:
        # The SDK restarts the reader's thread after fork but keeps its export lock: if the
        # parent was exporting at that moment, the child's reader would block on it forever.
        if hasattr(reader, "_export_lock"):
            reader._export_lock = threading.Lock()
    return True
