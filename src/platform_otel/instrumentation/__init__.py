"""Integration registry.

Each integration is one module in this package exposing:

* ``LIBRARY``: the import name of the instrumented library (``"fastapi"``), used
  to decide, without importing it, whether the library is installed;
* ``instrument(ctx: InstrumentationContext) -> str | None``: idempotent, reversible; a
  string declines with that reason (logged at ``DECLINE_LEVEL`` when the module sets
  one, else as a warning);
* ``uninstrument() -> None``.

Modules are imported only when their integration is enabled, so importing
``platform_otel`` never imports fastapi, httpx, mcp, ollama or pynvml.

No stdlib module is imported here by a name that a submodule also has
(``logging``, ``requests``...): importing ``platform_otel.instrumentation.logging``
sets the package attribute ``logging`` to that submodule, which would shadow it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field

# Not `import logging`: the package attribute `logging` becomes our logging submodule once
# that integration is imported, and `logging.WARNING` then raised AttributeError.
from logging import WARNING
from typing import TYPE_CHECKING, Any

from .._safety import internal_errors_raise, log_once, logger, report_internal_error

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from .._config import Settings

__all__ = [
    "REGISTRY",
    "InstrumentationContext",
    "IntegrationStatus",
    "active",
    "disable_all",
    "enable",
    "freeze",
    "status",
]

# name -> (module under platform_otel.instrumentation, import name of the library, deferred)
# A deferred integration is enabled when the application imports the library (a post-import
# hook), so init() never pays for importing fastapi or mcp in a process that doesn't use them.
REGISTRY: dict[str, tuple[str, str, bool]] = {
    "logging": ("logging", "logging", False),
    "fastapi": ("fastapi", "fastapi", True),
    "httpx": ("httpx", "httpx", True),
    "requests": ("requests", "requests", True),
    "mcp": ("mcp", "mcp", True),
    "ollama": ("ollama", "ollama", True),
    "gpu": ("gpu", "pynvml", False),
}


@dataclass
class InstrumentationContext:
    """Everything an integration needs; integrations never read globals or env."""

    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider | None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class IntegrationStatus:
    name: str
    active: bool
    reason: str


_active: dict[str, Any] = {}  # name -> imported module
_pending: dict[str, str] = {}  # name -> library whose import will enable it
_declined: dict[str, str] = {}  # name -> why it is off
_generation = [0]  # bumped by disable_all() so stale post-import hooks do nothing


def _module_available(name: str) -> bool:
    # REGISTRY entries whose module file does not exist yet are reported, not crashed on.
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def enable(name: str, ctx: InstrumentationContext) -> IntegrationStatus:
    """Enable one integration if its library is installed; never raises.

    Deferred integrations whose library is not imported yet are armed with a
    post-import hook and reported as ``waiting for import``.
    """
    if name in _active:
        return IntegrationStatus(name, True, "already active")
    try:
        module_name, library, deferred = REGISTRY[name]
    except KeyError:
        return IntegrationStatus(name, False, f"unknown integration {name!r}")
    try:
        if not _module_available(module_name):
            return IntegrationStatus(name, False, "not implemented in this version")
        if library not in sys.modules and importlib.util.find_spec(library) is None:
            return IntegrationStatus(name, False, f"library {library!r} not installed")
        if deferred and library not in sys.modules:
            generation = _generation[0]

            def on_import(_module: object) -> None:
                if generation == _generation[0]:  # not after shutdown() / a later init()
                    _enable_now(name, module_name, ctx)

            import wrapt

            wrapt.register_post_import_hook(on_import, library)
            _pending[name] = library
            return IntegrationStatus(name, True, f"waiting for import of {library!r}")
        return _enable_now(name, module_name, ctx)
    except Exception as exc:
        return _failed(name, exc)


def _enable_now(name: str, module_name: str, ctx: InstrumentationContext) -> IntegrationStatus:
    _pending.pop(name, None)
    if name in _active:
        return IntegrationStatus(name, True, "already active")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
        reason = module.instrument(ctx)
        if reason:  # an integration may decline, e.g. an unsupported library version
            log_once(
                f"decline:{name}",
                getattr(module, "DECLINE_LEVEL", WARNING),
                "platform-otel: %s integration disabled: %s",
                name,
                reason,
            )
            _declined[name] = str(reason)
            return IntegrationStatus(name, False, str(reason))
        _active[name] = module
        return IntegrationStatus(name, True, "active")
    except Exception as exc:
        return _failed(name, exc)


def _failed(name: str, exc: Exception) -> IntegrationStatus:
    """One warning naming the integration and the error; the traceback goes to DEBUG.

    Typically a version the integration does not support (a name missing from an
    older or newer library): the application runs on without that integration.
    """
    if internal_errors_raise():
        raise  # our own test suite: failures must not hide
    log_once(
        f"enable:{name}",
        WARNING,
        "platform-otel: %s integration disabled: %r (the application is not affected)",
        name,
        exc,
    )
    logger.debug("platform-otel: %s integration failed", name, exc_info=exc)
    _declined[name] = f"failed: {exc!r}"
    return IntegrationStatus(name, False, f"failed: {exc!r}")


def status(name: str) -> IntegrationStatus:
    """Current state of one integration (for ``platform-otel doctor``)."""
    if name in _active:
        return IntegrationStatus(name, True, "active")
    if name in _pending:
        return IntegrationStatus(name, True, f"waiting for import of {_pending[name]!r}")
    if name in _declined:
        return IntegrationStatus(name, False, _declined[name])
    return IntegrationStatus(name, False, "not enabled")


def freeze() -> None:
    """Stop pending post-import hooks from enabling anything (shutdown has begun).

    Without this, a library first imported during the final flush (the HTTP
    exporter imports ``requests``) would be instrumented against providers that
    are shutting down.
    """
    _generation[0] += 1
    _pending.clear()


def disable_all() -> None:
    """Undo every active integration (used by shutdown and tests)."""
    _generation[0] += 1
    _pending.clear()
    _declined.clear()
    for name, module in list(_active.items()):
        try:
            module.uninstrument()
        except Exception:
            report_internal_error(f"uninstrument {name}")
        _active.pop(name, None)
    from ._entry_points import disable_all as disable_entry_points

    disable_entry_points()


def active() -> list[str]:
    return list(_active)
