"""platform-otel: one call gives a Python service traces, metrics and correlated logs.

    import platform_otel
    platform_otel.init()

Importing this package is cheap: the SDK, exporters and integrations are
imported by ``init()``, and only those that are enabled and installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._pipeline import Pipeline, QueueObservation, Stage, StageRun
    from ._telemetry import Telemetry

__all__ = [
    "ConfigError",
    "Pipeline",
    "QueueObservation",
    "Stage",
    "StageRun",
    "Telemetry",
    "get_telemetry",
    "init",
    "pipeline",
    "shutdown",
]
__version__ = "0.1.0"


def init(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    prometheus_port: int | None = None,
    instrument: Sequence[str] | None = None,
    disable: Sequence[str] | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
    log_console: str | None = None,
    log_export: bool | None = None,
    log_export_access: bool | None = None,
    capture_content: bool | None = None,
    sample_ratio: float | None = None,
    fastapi_impl: str | None = None,
    shutdown_timeout: float | None = None,
    strict: bool | None = None,
    exporters: Mapping[str, Sequence[str]] | None = None,
    server_request_hook: Callable[[Any, Any], None] | None = None,
    server_response_hook: Callable[[Any, Any, Any], None] | None = None,
    gpu_interval: float | None = None,
) -> Telemetry:
    """Configure OpenTelemetry for this process and return its :class:`Telemetry` handle.

    Every argument is optional; an argument wins over its environment variable,
    which wins over the default (docs/configuration.md lists them all). Bad values
    are reported as one warning each and replaced by a safe value; with
    ``strict=True`` they raise one :class:`ConfigError` instead. Calling ``init()``
    again returns the same handle.

    ``server_request_hook(span, scope)`` and ``server_response_hook(span, scope, message)``
    are called for every traced HTTP request (at its start, and at ``http.response.start``),
    as the official instrumentation's hooks are; an exception inside a hook is reported once
    and never reaches the request.
    """
    from ._config import InitOptions, sdk_environment

    options = InitOptions(
        service_name=service_name,
        service_version=service_version,
        environment=environment,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        resource_attributes=resource_attributes,
        prometheus_port=prometheus_port,
        instrument=instrument,
        disable=disable,
        log_format=log_format,
        log_level=log_level,
        log_console=log_console,
        log_export=log_export,
        log_export_access=log_export_access,
        capture_content=capture_content,
        sample_ratio=sample_ratio,
        fastapi_impl=fastapi_impl,
        shutdown_timeout=shutdown_timeout,
        strict=strict,
        exporters=exporters,
        server_request_hook=server_request_hook,
        server_response_hook=server_response_hook,
        gpu_interval=gpu_interval,
    )
    from . import _sdk_env

    # Before the SDK is imported: some of its modules raise on bad values they read.
    _sdk_env.install(sdk_environment())
    from ._telemetry import init as _init

    return _init(options)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop telemetry; bounded by ``timeout`` seconds (default 5)."""
    from ._telemetry import shutdown as _shutdown

    return _shutdown(timeout)


def get_telemetry() -> Telemetry | None:
    """The active :class:`Telemetry`, or None before ``init()``."""
    from ._telemetry import current

    return current()


def pipeline(name: str, **kwargs: Any) -> Pipeline:
    """A :class:`Pipeline` that records throughput, outcomes, stage duration, lag and queue depth."""
    from ._pipeline import pipeline as _pipeline

    return _pipeline(name, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Telemetry":
        from ._telemetry import Telemetry

        return Telemetry
    if name in ("Pipeline", "Stage", "StageRun", "QueueObservation"):
        from . import _pipeline

        return getattr(_pipeline, name)
    raise AttributeError(f"module 'platform_otel' has no attribute {name!r}")
