"""``init()``: build the three SDK providers once, install them, enable integrations.

Design choices (see docs/configuration.md for the user-facing version):

* **Once per process.** A second ``init()`` returns the same :class:`Telemetry`
  (warning if its arguments differ); processors are never stacked.
* **Cooperative.** If the application or ``opentelemetry-instrument`` already
  installed SDK providers, they are reused; our exporters are added only to a
  provider that has none, so nothing is exported twice.
* **Fork-safe.** After ``fork()`` the child gets a new ``service.instance.id``,
  fresh metric state (no re-export of the parent's counters), new exporter
  network clients (created lazily in the child) and, under ``multiprocessing``,
  a flush at child exit (which skips ``atexit``).
* **Bounded.** Queues are bounded (``OTEL_BSP_*``/``OTEL_BLRP_*``), and
  shutdown, including the final flush, ends within ``shutdown_timeout``
  (default 5 s) even when the collector is unreachable.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource

from . import _exporters, _fast, _otel_private
from ._config import ConfigError, InitOptions, Settings, load_settings
from ._resource import build_resource, refresh_after_fork
from ._safety import logger, report_internal_error
from .instrumentation import InstrumentationContext, IntegrationStatus

__all__ = ["Telemetry", "current", "init", "shutdown"]

_lock = threading.RLock()
_current: Telemetry | None = None
_fork_hook_registered = False
# OpenTelemetry's global providers can be set once per process: after ours were shut
# down, a new init() cannot install working ones.
_providers_shut_down = [False]


class Telemetry:
    """Handle returned by :func:`init`: the effective settings, providers and lifecycle."""

    def __init__(
        self,
        settings: Settings,
        resource: Resource | None,
        tracer_provider: Any,
        meter_provider: Any,
        logger_provider: Any,
        exporters: list[_exporters.ResilientExporter],
        *,
        enabled: bool = True,
        owns_providers: bool = True,
        options: InitOptions | None = None,
    ) -> None:
        self.settings = settings
        self.resource = resource
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.exporters = exporters
        self.enabled = enabled
        self.owns_providers = owns_providers
        self.integrations: list[IntegrationStatus] = []
        self.prometheus_address: tuple[str, int] | None = None
        self._options = InitOptions() if options is None else options
        self._shutdown_done = False
        self._prometheus_server: Any = None

    def __repr__(self) -> str:
        active = [i.name for i in self.integrations if i.active]
        return f"<Telemetry service={self.settings.service_name!r} enabled={self.enabled} integrations={active}>"

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown_done

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything buffered now; False if it did not finish within ``timeout`` s."""
        if not self.enabled or self._shutdown_done:
            return True
        return _run_bounded(
            [
                lambda: self.tracer_provider.force_flush(int(timeout * 1000)),
                lambda: self.meter_provider.force_flush(int(timeout * 1000)),
                lambda: (
                    self.logger_provider.force_flush(int(timeout * 1000))
                    if self.logger_provider
                    else True
                ),
            ],
            timeout,
        )

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop exporting; returns within ``timeout`` s (default: settings.shutdown_timeout)."""
        global _current
        with _lock:
            if self._shutdown_done:
                return True
            self._shutdown_done = True
            if _current is self:
                _current = None
            if self.enabled and self.owns_providers:
                _providers_shut_down[0] = True
        if not self.enabled:
            return True
        from .instrumentation import freeze

        freeze()
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        # The final export may retry for half the budget: enough for a live collector, and
        # an unreachable one costs the process at most timeout/2 at exit.
        for exporter in self.exporters:
            exporter.begin_shutdown(time.monotonic() + timeout / 2)
        # The final flush may import a library for the first time (the HTTP exporter imports
        # requests): a deferred integration must not start then, on shut-down providers.
        from . import instrumentation as _instrumentation

        _instrumentation._generation[0] += 1
        tasks: list[Callable[[], Any]] = []
        if self.owns_providers:
            tasks = [
                self.tracer_provider.shutdown,
                lambda: self.meter_provider.shutdown(timeout_millis=max(1.0, timeout * 1000)),
            ]
            if self.logger_provider is not None:
                tasks.append(self.logger_provider.shutdown)
        ok = _run_bounded(tasks, max(0.0, deadline - time.monotonic()))
        from .instrumentation import disable_all

        try:
            disable_all()
        except Exception:
            report_internal_error("uninstrument")
        _fast.reset()
        if self._prometheus_server is not None:
            try:
                self._prometheus_server.shutdown()
            except Exception:
                pass
        return ok


def _run_bounded(tasks: list[Callable[[], Any]], timeout: float) -> bool:
    """Run ``tasks`` in parallel daemon threads; wait at most ``timeout`` s for all of them."""
    results: list[bool] = []

    def runner(task: Callable[[], Any]) -> None:
        try:
            results.append(task() is not False)
        except Exception:
            results.append(False)
            report_internal_error("shutdown/flush")

    threads = [
        threading.Thread(target=runner, args=(t,), daemon=True, name="platform-otel-flush")
        for t in tasks
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return all(not t.is_alive() for t in threads) and all(results)


def current() -> Telemetry | None:
    """The active :class:`Telemetry`, or None before :func:`init` / after :func:`shutdown`."""
    return _current


def shutdown(timeout: float | None = None) -> bool:
    """Shut down the active :class:`Telemetry` (no-op without one)."""
    telemetry = _current
    return telemetry.shutdown(timeout) if telemetry is not None else True


def _sampler(settings: Settings) -> Any:
    from opentelemetry.sdk.trace import sampling

    arg = 1.0 if settings.sampler_arg is None else settings.sampler_arg
    factories: dict[str, Callable[[], Any]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(arg),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(arg)),
    }
    return factories[settings.sampler]()


def _install_propagators(settings: Settings) -> None:
    """Set the global propagator from the validated names; skip those not installed."""
    from importlib.metadata import entry_points

    propagators: list[Any] = []
    for name in settings.propagators:
        if name == "tracecontext":
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            propagators.append(TraceContextTextMapPropagator())
        elif name == "baggage":
            from opentelemetry.baggage.propagation import W3CBaggagePropagator

            propagators.append(W3CBaggagePropagator())
        elif name != "none":
            found = [ep for ep in entry_points(group="opentelemetry_propagator") if ep.name == name]
            if not found:
                logger.warning(
                    "platform-otel: OTEL_PROPAGATORS entry %r needs a package that is not installed "
                    "(e.g. opentelemetry-propagator-%s); skipped",
                    name,
                    name.removesuffix("multi"),
                )
                continue
            propagators.append(found[0].load()())
    # opentelemetry.propagate raises at import on an OTEL_PROPAGATORS entry it cannot load,
    # which would crash every instrumented library importing it: it sees the usable ones
    # only (platform_otel._sdk_env; the process environment is left as it is).
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator

    set_global_textmap(CompositePropagator(propagators))


def _span_limits() -> Any:
    """Explicit limits in place of the rejected limit variables (None: the SDK reads them)."""
    from opentelemetry.sdk.trace import SpanLimits

    from ._config import span_limit_overrides

    overrides = span_limit_overrides()
    if not overrides:
        return None
    return SpanLimits(**{k: SpanLimits.UNSET if v is None else v for k, v in overrides.items()})


def _exemplar_filter(name: str) -> Any:
    from opentelemetry.sdk.metrics import (
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )

    return {"always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter}.get(
        name, TraceBasedExemplarFilter
    )()


def _start_prometheus(
    settings: Settings, problems: list[Any]
) -> tuple[Any, Any, tuple[str, int] | None]:
    """Bind the scrape endpoint first, so a busy port is a config problem, not a crash."""
    if settings.prometheus_port is None:
        return None, None, None
    from ._config import Problem

    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        server, _thread = start_http_server(settings.prometheus_port, addr=settings.prometheus_host)
        address = server.server_address[:2]
        return PrometheusMetricReader(), server, (str(address[0]), int(address[1]))
    except OSError as exc:
        problems.append(
            Problem(
                "PLATFORM_OTEL_PROMETHEUS_PORT",
                settings.prometheus_port,
                "no Prometheus endpoint",
                f"cannot listen on {settings.prometheus_host}:{settings.prometheus_port}: {exc.strerror or exc}",
            )
        )
        return None, None, None


def _existing_sdk_providers() -> tuple[Any, Any, Any]:
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tp = trace.get_tracer_provider()
    mp = metrics.get_meter_provider()
    lp = get_logger_provider()
    return (
        tp if isinstance(tp, TracerProvider) else None,
        mp if isinstance(mp, MeterProvider) else None,
        lp if isinstance(lp, LoggerProvider) else None,
    )


def init(options: InitOptions | None = None) -> Telemetry:
    """Configure traces, metrics and logs for this process. See ``platform_otel.init``."""
    global _current
    options = InitOptions() if options is None else options
    with _lock:
        if _current is not None:
            if options.given() and options != _current._options:
                logger.warning(
                    "platform-otel: init() was already called with other arguments; "
                    "keeping the first configuration"
                )
            return _current
        settings = load_settings(options=options)
        problems = list(settings.problems)
        if settings.strict and problems:
            raise ConfigError(problems)
        if settings.sdk_disabled or _providers_shut_down[0]:
            for p in problems:
                logger.warning("platform-otel: %s", p)
            if settings.sdk_disabled:
                logger.info("platform-otel: OTEL_SDK_DISABLED=true; no telemetry is produced")
            else:
                logger.warning(
                    "platform-otel: init() after shutdown(): OpenTelemetry's global providers can be "
                    "set only once per process, so telemetry stays off in this process"
                )
            _current = Telemetry(
                settings,
                None,
                trace.get_tracer_provider(),
                metrics.get_meter_provider(),
                None,
                [],
                enabled=False,
                owns_providers=False,
                options=options,
            )
            return _current

        prom_reader, prom_server, prom_address = _start_prometheus(settings, problems)
        if settings.strict and problems:
            if prom_server is not None:
                prom_server.shutdown()
            raise ConfigError(problems)
        for p in problems:
            logger.warning("platform-otel: %s", p)

        telemetry = _build(settings, prom_reader, options)
        telemetry._prometheus_server = prom_server
        telemetry.prometheus_address = prom_address
        _current = telemetry
        _register_process_hooks()

        ctx = InstrumentationContext(
            settings=settings,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            logger_provider=telemetry.logger_provider,
        )
        from .instrumentation import enable

        for name in settings.integrations:
            telemetry.integrations.append(enable(name, ctx))
        for name in settings.disabled_integrations:
            telemetry.integrations.append(
                IntegrationStatus(name, False, "disabled by configuration")
            )
        # Every other OpenTelemetry instrumentation installed (opentelemetry_instrumentor entry points).
        from .instrumentation._entry_points import enable_installed

        telemetry.integrations.extend(enable_installed(ctx))
        return telemetry


def _build(settings: Settings, prom_reader: Any, options: InitOptions) -> Telemetry:
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    _install_propagators(settings)
    _fast.enable(settings.otlp_encoder)  # before the exporters: they encode the fast way or not
    _exporters.mute_sdk_exporter_logs(queue_warning_once=not _fast.active())
    existing_tp, existing_mp, existing_lp = _existing_sdk_providers()
    resource = build_resource(settings)
    exporters: list[_exporters.ResilientExporter] = []

    span_exporters = _exporters.make_exporters("traces", settings)
    if existing_tp is not None:
        tracer_provider = existing_tp
        has_processors = _otel_private.has_span_processors(existing_tp)
        logger.info(
            "platform-otel: reusing the TracerProvider installed before init()%s",
            "" if has_processors else "; adding platform-otel's exporters to it",
        )
        if has_processors:
            span_exporters = []
    else:
        tracer_provider = TracerProvider(
            resource=resource,
            sampler=_sampler(settings),
            span_limits=_span_limits(),
            shutdown_on_exit=False,
        )
        trace.set_tracer_provider(tracer_provider)
    for exp in span_exporters:
        processor_class = _fast.span_processor_class(exp)
        tracer_provider.add_span_processor(
            processor_class(
                exp,  # type: ignore[arg-type]
                max_queue_size=settings.bsp_max_queue_size,
                schedule_delay_millis=settings.bsp_schedule_delay * 1000,
                max_export_batch_size=settings.bsp_max_export_batch_size,
                export_timeout_millis=settings.bsp_export_timeout * 1000,
            )
        )
    exporters += span_exporters

    if existing_mp is not None:
        meter_provider = existing_mp
        logger.info("platform-otel: reusing the MeterProvider installed before init()")
    else:
        readers: list[Any] = []
        for exp in _exporters.make_exporters("metrics", settings):
            exporters.append(exp)
            readers.append(
                PeriodicExportingMetricReader(
                    exp,  # type: ignore[arg-type]
                    export_interval_millis=settings.metric_export_interval * 1000,
                    export_timeout_millis=settings.metric_export_timeout * 1000,
                )
            )
        if prom_reader is not None:
            readers.append(prom_reader)
        meter_provider = MeterProvider(
            metric_readers=readers,
            resource=resource,
            exemplar_filter=_exemplar_filter(settings.exemplar_filter),
            shutdown_on_exit=False,
        )
        metrics.set_meter_provider(meter_provider)

    logger_provider: Any
    if existing_lp is not None:
        logger_provider = existing_lp
    elif not settings.log_export or not settings.logs.exporters:
        logger_provider = None
    else:
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for exp in _exporters.make_exporters("logs", settings):
            exporters.append(exp)
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    exp,  # type: ignore[arg-type]
                    schedule_delay_millis=settings.blrp_schedule_delay * 1000,
                    max_queue_size=settings.blrp_max_queue_size,
                    max_export_batch_size=settings.blrp_max_export_batch_size,
                    export_timeout_millis=settings.blrp_export_timeout * 1000,
                )
            )
        set_logger_provider(logger_provider)

    return Telemetry(
        settings,
        resource,
        tracer_provider,
        meter_provider,
        logger_provider,
        exporters,
        owns_providers=existing_tp is None,
        options=options,
    )


def _register_process_hooks() -> None:
    global _fork_hook_registered
    if _fork_hook_registered:
        return
    _fork_hook_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        # The package's only at-fork hook. Registered after the SDK providers were built,
        # so that in the child it runs after theirs (see _push_identity).
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
    _install_sigterm_flush()


def _install_sigterm_flush() -> None:
    """Flush on SIGTERM, then behave exactly as before (chain, or die by the signal).

    A process killed by SIGTERM with the default disposition skips ``atexit``, and
    uvicorn re-raises SIGTERM after its graceful shutdown: without this, the last
    seconds of telemetry of every stopped container are lost. Only the main thread
    can install signal handlers; elsewhere this is skipped.
    """
    import signal

    if threading.current_thread() is not threading.main_thread() or os.environ.get(
        "PLATFORM_OTEL_HANDLE_SIGTERM", "1"
    ).lower() in ("0", "false", "no"):
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return
    if previous is signal.SIG_IGN or previous is None:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        try:
            telemetry = _current
            if telemetry is not None:
                telemetry.shutdown()
        except Exception:
            report_internal_error("SIGTERM flush")
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # die by the signal, as without us
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        pass


def _at_exit() -> None:
    telemetry = _current
    if telemetry is not None:
        telemetry.shutdown()


def _before_fork() -> None:
    try:
        _exporters._before_fork()  # waits (bounded) for in-flight exports
    except Exception:
        report_internal_error("before fork")


def _after_fork_in_parent() -> None:
    try:
        _exporters._after_fork_in_parent()
    except Exception:
        report_internal_error("after fork (parent)")


def _after_fork_in_child() -> None:
    """In a forked child, reset each module's state, in a fixed order.

    Locks and pids first (``_exporters``, ``_pipeline`` when it was imported), then the
    request path (``_fast``), the GPU sampler (its own NVML, when the integration was
    imported), then this module's telemetry (identity, metrics). A module never
    imported owns no state and is not imported here.
    """
    resets: list[tuple[str, Callable[[], None]]] = [("exporters", _exporters._after_fork_in_child)]
    pipeline = sys.modules.get(f"{__package__}._pipeline")
    if pipeline is not None:
        resets.append(("pipeline", pipeline._after_fork_in_child))
    resets.append(("fast", _fast.after_fork_in_child))
    gpu = sys.modules.get(f"{__package__}.instrumentation.gpu")
    if gpu is not None:
        resets.append(("gpu", gpu._after_fork_in_child))
    resets.append(("telemetry", _reset_telemetry_after_fork))
    for where, reset in resets:
        try:
            reset()
        except Exception:
            report_internal_error(f"after fork ({where})")


def _reset_telemetry_after_fork() -> None:
    """Give the child its own identity and a clean metric state (see module docstring)."""
    telemetry = _current
    if telemetry is None or not telemetry.enabled:
        return
    if telemetry.resource is not None:
        refresh_after_fork(telemetry.resource)
        _push_identity(telemetry)
    _reset_metric_state(telemetry.meter_provider)
    telemetry._prometheus_server = (
        None  # its thread did not survive the fork; the port is the parent's
    )
    if "multiprocessing" in sys.modules:
        import multiprocessing.util as mp_util

        # multiprocessing children leave through os._exit(), skipping atexit; a finalizer
        # registered *after* its bootstrap clears the registry is run on the way out.
        mp_util.register_after_fork(telemetry, _register_mp_finalizer)


def _push_identity(telemetry: Telemetry) -> None:
    """Hand the child's identity to the providers.

    SDK >= 1.4x providers have their own after-fork hook, registered before ours,
    that replaces their resource with a *copy* (merged with a new SDK-made
    instance id): refreshing our shared object in place no longer reaches them,
    and ``process.pid`` would stay the parent's. Merge our identity into each.
    """
    assert telemetry.resource is not None
    identity = Resource(
        {
            "service.instance.id": telemetry.resource.attributes["service.instance.id"],
            "process.pid": telemetry.resource.attributes["process.pid"],
        }
    )
    for provider in (
        telemetry.tracer_provider,
        telemetry.meter_provider,
        telemetry.logger_provider,
    ):
        if telemetry.owns_providers:
            _otel_private.update_provider_resource(provider, identity)


def _register_mp_finalizer(telemetry: Telemetry) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, telemetry.shutdown, exitpriority=100)


def _reset_metric_state(meter_provider: Any) -> None:
    """Forget every aggregation inherited from the parent (new start time, zero counts)."""
    if _otel_private.reset_metric_state(meter_provider):
        logging.getLogger("platform_otel").debug("platform-otel: metric state reset after fork")
