"""Exporters that cannot hurt the application.

``ResilientExporter`` wraps an OTLP (or console) exporter and adds what the
application needs from it:

* **Lazy and fork-aware.** The real exporter (and its gRPC channel or HTTP
  session) is created on first export, in the process that exports. A child
  created by ``fork()`` builds its own: network clients never cross a fork, and
  ``import grpc`` costs nothing at start-up.
* **One warning, not a storm.** The first failed export logs one warning naming
  the signal and endpoint; later failures are silent until an export succeeds,
  which is logged at INFO. The OTLP exporters' own per-retry logs are muted.
* **Never raises.** Exceptions become a failed export result.
* **Bounded shutdown.** ``begin_shutdown(deadline)`` shortens the inner
  exporter's retry budget so the final flush cannot outlive the process's
  shutdown timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter

try:
    from opentelemetry.sdk._logs.export import LogRecordExportResult
except ImportError:  # SDK < 1.39
    from opentelemetry.sdk._logs.export import LogExportResult as LogRecordExportResult  # type: ignore[assignment]
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import _fast, _otel_private
from ._config import Settings, SignalSettings
from ._fast import otlp as _otlp_fast
from ._safety import logger

__all__ = ["ResilientExporter", "in_export", "make_exporters"]

_state = threading.local()


def in_export() -> bool:
    """True on a thread currently inside an export call (its logs must not be exported)."""
    return getattr(_state, "exporting", False)


_MUTED_SDK_LOGGERS = {
    # The OTLP exporters log every retry; ResilientExporter reports outages instead.
    "opentelemetry.exporter.otlp": logging.CRITICAL,
    "opentelemetry.exporter.http_transport": logging.CRITICAL,
    # The batch processors log "Queue full, dropping ..." for every item dropped: a log record
    # built (then de-duplicated) per request during a collector outage, ~7 % of a web worker's
    # throughput. emit_queued() says it once instead. Export errors (ERROR) still show.
    "opentelemetry.sdk._shared_internal": logging.ERROR,
}


_QUEUE_FULL = (
    "platform-otel: the %s export queue is full: each new item replaces the oldest until "
    "the exporter catches up (collector unreachable or too slow?). Logged once; see "
    "OTEL_BSP_MAX_QUEUE_SIZE / OTEL_BLRP_MAX_QUEUE_SIZE."
)


class _QueueFullOnce(logging.Filter):
    """The SDK batch processors' "Queue full, dropping ..." record, once per kind of item.

    Used on the SDK path, where the processors' own ``emit`` runs: the first record is
    reworded into platform-otel's one warning, the per-item repeats are dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        kind = (
            str(record.args[0]) if isinstance(record.args, tuple) and record.args else "telemetry"
        )
        if kind in self._seen or len(self._seen) > 8:
            return False
        self._seen.add(kind)
        record.msg, record.args = _QUEUE_FULL, (kind,)
        return True


_queue_full_once = _QueueFullOnce()


def mute_sdk_exporter_logs(queue_warning_once: bool = False) -> None:
    """Silence the SDK's per-retry and per-item export logs; we report each condition once.

    ``queue_warning_once``: the SDK path, where the batch processors' own "Queue full"
    records are the only sign of a full queue: keep the first of each, reworded.
    """
    for name, level in _MUTED_SDK_LOGGERS.items():
        lg = logging.getLogger(name)
        if queue_warning_once and name == "opentelemetry.sdk._shared_internal":
            if _queue_full_once not in lg.filters:
                lg.addFilter(_queue_full_once)
            continue
        if lg.level == logging.NOTSET:  # respect a level the user set on purpose
            lg.setLevel(level)


# One warning per endpoint, not per signal: traces, metrics and logs usually share one
# collector, and "collector is down" is one fact for the operator.
_outages: dict[str, set[str]] = {}
_outages_lock = threading.Lock()


def _outage_key(target: str) -> str:
    """``host:port`` of a target: OTLP/HTTP signals differ only by their ``/v1/...`` path."""
    netloc = urllib.parse.urlsplit(target.split(" ", 1)[0]).netloc
    return netloc or target


def _outage_started(target: str, signal: str, error: object) -> None:
    with _outages_lock:
        signals = _outages.setdefault(_outage_key(target), set())
        first = not signals
        signals.add(signal)
    if first:
        logger.warning(
            "platform-otel: cannot export %s to %s%s; telemetry is dropped until it "
            "answers (retrying in the background, no further warnings)",
            signal,
            target,
            f" ({error!r})" if error else "",
        )


def _outage_ended(target: str, signal: str) -> None:
    with _outages_lock:
        signals = _outages.get(_outage_key(target), set())
        signals.discard(signal)
        last = not signals
    if last:
        logger.info("platform-otel: exporting to %s again", target)


# Building an exporter imports grpc/requests in an export thread. A fork() while another
# thread is half-way through such an import leaves the child a partially initialised
# module ("cannot import name 'Compression' from partially initialized module 'grpc'",
# seen with gunicorn --preload). One lock serialises the builds and fork() waits for it.
_build_lock = threading.Lock()


_FORK_WAIT_S = 2.0  # longest a fork() waits for in-flight exports


class _ForkGate:
    """``fork()`` waits (bounded) until no export is in flight; exports wait while it forks.

    gRPC skips its own fork handlers when a thread is inside an RPC at fork time
    ("Other threads are currently calling into gRPC, skipping fork() handlers"); the
    child then fails with "epoll_ctl failed: file descriptor was created pre fork",
    exports nothing and may abort. Seen with ``gunicorn --preload`` whose master exports.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False

    def enter(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking, timeout=_FORK_WAIT_S * 2)
            self._active += 1

    def exit(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active <= 0:
                self._cond.notify_all()

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            self._cond.wait_for(lambda: self._active <= 0, timeout=_FORK_WAIT_S)
        _build_lock.acquire()  # builds happen inside the gate, so this is free by now

    def after_in_parent(self) -> None:
        _build_lock.release()
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_in_child(self) -> None:
        _build_lock.release()
        self._cond = threading.Condition()  # the parent's exporting threads do not exist here
        self._active = 0
        self._forking = False


_gate = _ForkGate()


# Called by init()'s one at-fork hook (platform_otel._telemetry), in this order.
def _before_fork() -> None:
    _gate.before_fork()


def _after_fork_in_parent() -> None:
    _gate.after_in_parent()


def _after_fork_in_child() -> None:
    """Reset what this module owns: the build lock and fork gate."""
    _gate.after_in_child()


class ResilientExporter:
    """Shared machinery; subclassed per signal so the SDK sees the right base class."""

    _success: Any
    _failure: Any

    def __init__(
        self, signal: str, target: str, factory: Callable[[], Any], accepts_encoded: bool = False
    ) -> None:
        #: The inner exporter is ``_otlp_fast``'s: batches may hold ``_otlp_fast.Encoded`` items.
        self.accepts_encoded = accepts_encoded
        self._signal = signal
        self._target = target
        self._factory = factory
        self._inner: Any = None
        self._pid = -1
        self._lock = threading.Lock()
        self._failing = False
        self._shutting_down = False
        self._deadline = 0.0
        self.dropped = 0  # items in failed exports, for doctor/tests
        self.exported = 0

    def _get_inner(self) -> Any:
        pid = os.getpid()
        if self._inner is None or self._pid != pid:
            with _build_lock:
                if self._inner is None or self._pid != pid:
                    self._inner = self._factory()
                    self._pid = pid
                    if self._shutting_down:
                        self._cap_timeout(self._inner)
        return self._inner

    def _call_export(self, items: Any, count: int) -> Any:
        if self._shutting_down and self._failing:
            # The endpoint was already unreachable: don't spend the shutdown budget retrying.
            self.dropped += count
            return self._failure
        _state.exporting = True
        _gate.enter()
        try:
            result = self._get_inner().export(items)
        except Exception as exc:
            result = self._failure
            error: object = exc
        else:
            error = None
        finally:
            _gate.exit()
            _state.exporting = False
        # Compare by name: the SDK's log exporters return LogRecordExportResult (1.35+),
        # a different enum from the deprecated LogRecordExportResult.
        if result == self._success or getattr(result, "name", None) == "SUCCESS":
            self.exported += count
            if self._failing:
                self._failing = False
                _outage_ended(self._target, self._signal)
        else:
            self.dropped += count
            if not self._failing:
                self._failing = True
                _outage_started(self._target, self._signal, error)
        return result

    def begin_shutdown(self, deadline: float) -> None:
        """Cap the inner exporter's retry budget so the final flush ends before ``deadline``."""
        self._shutting_down = True
        self._deadline = deadline
        if self._inner is not None:
            self._cap_timeout(self._inner)

    def _cap_timeout(self, inner: Any) -> None:
        _otel_private.cap_exporter_timeout(inner, max(0.1, self._deadline - time.monotonic()))

    def _shutdown_inner(self) -> None:
        inner = self._inner
        if inner is not None and self._pid == os.getpid():
            try:
                inner.shutdown()
            except Exception:
                pass

    def _flush_inner(self, timeout_millis: int) -> bool:
        inner = self._inner
        if inner is None:
            return True
        try:
            return bool(inner.force_flush(timeout_millis))
        except Exception:
            return False


class ResilientSpanExporter(ResilientExporter, SpanExporter):
    _success = SpanExportResult.SUCCESS
    _failure = SpanExportResult.FAILURE

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        result: SpanExportResult = self._call_export(spans, len(spans))
        return result

    def shutdown(self) -> None:
        self._shutdown_inner()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._flush_inner(timeout_millis)


class ResilientLogExporter(ResilientExporter, LogRecordExporter):
    _success = LogRecordExportResult.SUCCESS
    _failure = LogRecordExportResult.FAILURE

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result: LogRecordExportResult = self._call_export(batch, len(batch))
        return result

    def shutdown(self) -> None:
        self._shutdown_inner()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._flush_inner(timeout_millis)


class ResilientMetricExporter(ResilientExporter, MetricExporter):
    _success = MetricExportResult.SUCCESS
    _failure = MetricExportResult.FAILURE

    def __init__(
        self, signal: str, target: str, factory: Callable[[], Any], temporality: str
    ) -> None:
        ResilientExporter.__init__(self, signal, target, factory)
        MetricExporter.__init__(self, preferred_temporality=_temporality(temporality))

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = sum(
            len(m.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        result: MetricExportResult = self._call_export(metrics_data, points)
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown_inner()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush_inner(int(timeout_millis))


def _temporality(preference: str) -> dict[type, AggregationTemporality]:
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )

    cumulative, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    if preference == "delta":
        return {
            Counter: delta,
            UpDownCounter: cumulative,
            Histogram: delta,
            ObservableCounter: delta,
            ObservableUpDownCounter: cumulative,
            ObservableGauge: cumulative,
        }
    if preference == "lowmemory":
        return {
            Counter: delta,
            UpDownCounter: cumulative,
            Histogram: delta,
            ObservableCounter: cumulative,
            ObservableUpDownCounter: cumulative,
            ObservableGauge: cumulative,
        }
    return {}


def _init_parameters(cls: Any) -> set[str]:
    """Named ``__init__`` parameters, looking through subclasses that only pass ``*args, **kwargs``."""
    import inspect

    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        named = {
            n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        if named - {"self"}:
            return named
    return set()


def _new(cls: Any, kwargs: dict[str, Any]) -> Any:
    """Construct an OTLP exporter without its self-observability metrics.

    Given no meter provider, the exporters look up the *global* one, which may be
    shut down by the time a final flush builds them ("A shutdown MeterProvider can
    not provide a Meter"), and their metrics are off unless the SDK's internal
    metrics flag is set anyway.
    """
    parameters = _init_parameters(cls)
    if "meter_provider" in parameters:
        from opentelemetry.metrics import NoOpMeterProvider

        kwargs = {**kwargs, "meter_provider": NoOpMeterProvider()}
    if "channel_options" in kwargs and "channel_options" not in parameters:
        kwargs = {k: v for k, v in kwargs.items() if k != "channel_options"}  # older exporters
    return cls(**kwargs)


# Reconnect within 5 s of the collector coming back (gRPC's default backoff reaches 120 s).
_GRPC_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def _otlp_factory(signal: str, cfg: SignalSettings, fast: bool = True) -> Callable[[], Any]:
    """A zero-argument constructor for the OTLP exporter; imports happen when it is called.

    ``fast``: over gRPC, spans and logs use the official exporters with
    ``_otlp_fast``'s encoder (same messages, about 4x less CPU per span; see
    docs/performance.md). ``PLATFORM_OTEL_OTLP_ENCODER=official`` turns it off.
    """

    def build() -> Any:
        kwargs: dict[str, Any] = {"endpoint": cfg.endpoint, "timeout": cfg.timeout}
        if cfg.headers:
            kwargs["headers"] = dict(cfg.headers)
        if cfg.protocol == "grpc":
            from grpc import Compression as GrpcCompression

            # Always explicit: given none, the exporter re-reads (and chokes on) the variable.
            kwargs["compression"] = {
                "gzip": GrpcCompression.Gzip,
                "deflate": GrpcCompression.Deflate,
            }.get(cfg.compression, GrpcCompression.NoCompression)
            insecure = cfg.insecure
            if insecure is None:
                insecure = cfg.endpoint.startswith("http://")
            kwargs["insecure"] = insecure
            # gRPC's reconnect backoff grows to 120 s: after a minute-long collector outage the
            # channel may wait that long before trying again and lose everything meanwhile.
            kwargs["channel_options"] = _GRPC_CHANNEL_OPTIONS
            if signal == "traces":
                if fast:
                    from ._fast.otlp import FastOTLPSpanExporter as OTLPSpanExporter
                else:
                    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                        OTLPSpanExporter,
                    )

                return _new(OTLPSpanExporter, kwargs)
            if signal == "metrics":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter,
                )

                return _new(OTLPMetricExporter, kwargs)
            if fast:
                from ._fast.otlp import FastOTLPLogExporter as OTLPLogExporter
            else:
                from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            return _new(OTLPLogExporter, kwargs)
        # requests imports netrc and shlex on its first request (get_netrc_auth). Import them
        # here, under the fork guard: a fork() during that first import would leave the child
        # a held module lock and its exporter threads blocked forever (gunicorn --preload).
        import netrc  # noqa: F401
        import shlex  # noqa: F401

        from opentelemetry.exporter.otlp.proto.http import Compression

        kwargs["compression"] = (
            Compression(cfg.compression) if cfg.compression != "none" else Compression.NoCompression
        )
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpan,
            )

            return _new(HttpSpan, kwargs)
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetric,
            )

            return _new(HttpMetric, kwargs)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLog

        return _new(HttpLog, kwargs)

    return build


def _console_factory(signal: str) -> Callable[[], Any]:
    def build() -> Any:
        if signal == "traces":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        if signal == "metrics":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            return ConsoleMetricExporter()
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return ConsoleLogRecordExporter()

    return build


_CLASSES: dict[str, type[ResilientExporter]] = {
    "traces": ResilientSpanExporter,
    "logs": ResilientLogExporter,
}


def make_exporters(signal: str, settings: Settings) -> list[ResilientExporter]:
    """The push exporters configured for ``signal`` (``prometheus`` is a reader, not here)."""
    cfg: SignalSettings = getattr(settings, signal)
    out: list[ResilientExporter] = []
    for name in cfg.exporters:
        if name == "otlp":
            # Outages are reported per collector (scheme://host:port), not per signal path.
            parsed = urllib.parse.urlsplit(cfg.endpoint)
            fast = settings.otlp_encoder != "official" and _fast.active()
            if fast:  # "fast": with the C encoder when it was built; "python": without it
                _otlp_fast.use_speedups(settings.otlp_encoder == "fast")
            factory, target = (
                _otlp_factory(signal, cfg, fast),
                f"{parsed.scheme}://{parsed.netloc} ({cfg.protocol})",
            )
            encoded = fast and cfg.protocol == "grpc"  # the factory builds _otlp_fast's exporter
        elif name == "console":
            factory, target, encoded = _console_factory(signal), "console", False
        else:
            continue
        if signal == "metrics":
            out.append(
                ResilientMetricExporter(signal, target, factory, settings.metrics_temporality)
            )
        else:
            out.append(_CLASSES[signal](signal, target, factory, encoded))
    return out
