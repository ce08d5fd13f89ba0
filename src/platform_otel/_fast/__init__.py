"""The fast path: the same telemetry as the SDK path, for less CPU per request.

What it is: SDK-compatible objects that skip the SDK's generic machinery where a
request does not need it, each held to the SDK by parity tests
(``tests/test_fast_parity.py``, ``tests/test_lean_paths.py``, ``tests/test_speedups.py``):

* ``trace``: :class:`~platform_otel._fast.trace.LeanSpan`, a ``ReadableSpan`` built
  without locks or copies, handed to the same span processors, sampler and limits;
* ``metrics``: a pre-aggregated histogram merged into the SDK reader's collection;
* ``logs``: log records put straight on the batch processor's queue;
* ``otlp`` (and the optional C encoder ``_encode``): spans encoded at end;
* ``queue``: the batch-queue hand-off without a system call per item.

The rest of the package calls only the functions below. Each returns ``None`` (or
the SDK's own class) when the fast path is off, and the caller then uses the plain
SDK object. The fast path is off for the process when any private OpenTelemetry
name it reads is missing on the installed SDK (:mod:`platform_otel._otel_private`),
when ``PLATFORM_OTEL_OTLP_ENCODER=official`` asks for the official tooling, or when
a configuration it does not mirror is found (then per object, e.g. a custom tracer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _otel_private

__all__ = [
    "active",
    "after_fork_in_child",
    "describe",
    "enable",
    "histogram",
    "log_emitter",
    "reader_added",
    "reset",
    "span_processor_class",
    "tracer",
    "why_not",
]

_logger = logging.getLogger("platform_otel")


@dataclass
class _State:
    active: bool = False
    reason: str = "init() has not run"


_state = _State()


def enable(encoder: str = "fast") -> bool:
    """Turn the fast path on for this process if the installed SDK allows it; True if on.

    ``encoder`` is the ``PLATFORM_OTEL_OTLP_ENCODER`` setting: ``"official"`` keeps
    the fast path off.
    """
    if encoder == "official":
        _state.active, _state.reason = False, "PLATFORM_OTEL_OTLP_ENCODER=official"
        return False
    problems = _otel_private.check()
    if problems:
        _state.active, _state.reason = False, _sdk_differs(problems)
        _logger.warning(
            "platform-otel: fast path off, the SDK path runs instead (same telemetry, more "
            "CPU per request): %s",
            _state.reason,
        )
        return False
    _state.active, _state.reason = True, "active"
    return True


def _sdk_differs(problems: list[str]) -> str:
    """Why the fast path is off: the first missing private name, and how many more."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"the installed OpenTelemetry SDK differs: {problems[0]}{more}"


def reset() -> None:
    """Back to the state before ``init()`` (shutdown, tests)."""
    _state.active, _state.reason = False, "init() has not run"


def active() -> bool:
    return _state.active


def why_not() -> str | None:
    """Why the fast path is off, or None when it is on (``platform-otel doctor``)."""
    return None if _state.active else _state.reason


def describe(encoder: str = "fast") -> str:
    """Which request path ``init()`` would run with this SDK and setting, and why (doctor)."""
    if encoder == "official":
        return "SDK path: PLATFORM_OTEL_OTLP_ENCODER=official"
    problems = _otel_private.check()
    if problems:
        return f"SDK path: {_sdk_differs(problems)}"
    from . import otlp

    if encoder == "python":
        how = "Python encoder (PLATFORM_OTEL_OTLP_ENCODER=python)"
    elif otlp._load_c_encoder() is not None:  # built; not switched on or off here
        how = "C encoder"
    else:
        how = "Python encoder (the C extension was not built)"
    return f"fast path: lean spans, histogram and log records; {how}"


def tracer(sdk_tracer: Any) -> Any:
    """A lean tracer mirroring ``sdk_tracer``, or None (use ``sdk_tracer`` itself)."""
    if not _state.active:
        return None
    from .trace import lean_tracer

    return lean_tracer(sdk_tracer)


def histogram(
    meter: Any, name: str, unit: str, description: str, boundaries: Sequence[float]
) -> Any:
    """A lean explicit-bucket histogram on ``meter``, or None (create the SDK instrument)."""
    if not _state.active:
        return None
    from .metrics import LeanHistogram

    return LeanHistogram.create(meter, name, unit, description, boundaries)


def log_emitter(logger_provider: Any) -> Any:
    """A lean log-record emitter for ``logger_provider``, or None (use ``Logger.emit``)."""
    if not _state.active or logger_provider is None:
        return None
    from .logs import LeanLogEmitter

    return LeanLogEmitter.create(logger_provider)


def reader_added(reader: Any) -> None:
    """A metric reader joined a running provider: lean histograms report to it too."""
    from .metrics import hook_reader

    hook_reader(reader)


def span_processor_class(exporter: Any) -> type:
    """The batch span processor for ``exporter``: the encoding one where it takes encoded spans."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if _state.active and getattr(exporter, "accepts_encoded", False):
        from .queue import EncodingBatchSpanProcessor

        return EncodingBatchSpanProcessor
    return BatchSpanProcessor


def after_fork_in_child() -> None:
    """Reset what the fast path holds per process (called by ``init()``'s one fork hook).

    Only modules already imported hold state; nothing is imported inside a fork hook."""
    import sys

    for name in ("queue", "metrics"):
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            module.after_fork_in_child()
