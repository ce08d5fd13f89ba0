"""Failure containment: our bugs must never become the host application's bugs.

Every entry point that runs inside application code (wrappers, middleware,
callbacks) is guarded: an exception raised by *our* code is logged once per
call site and swallowed. Under pytest (``PLATFORM_OTEL_RAISE_INTERNAL=1``)
it is re-raised so bugs do not hide in our own test suite.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["guard", "internal_errors_raise", "log_once", "logger", "report_internal_error"]

logger = logging.getLogger("platform_otel")

_seen: set[str] = set()
_seen_lock = threading.Lock()
_MAX_KEYS = 1024  # bound the memory used for de-duplication

F = TypeVar("F", bound=Callable[..., Any])


def log_once(key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
    """Log ``msg`` the first time ``key`` is seen; return whether it was logged."""
    with _seen_lock:
        if key in _seen or len(_seen) >= _MAX_KEYS:
            return False
        _seen.add(key)
    logger.log(level, msg, *args, exc_info=exc_info)
    return True


def forget(key: str) -> None:
    """Allow ``key`` to be logged again (e.g. an exporter that recovered and failed again)."""
    with _seen_lock:
        _seen.discard(key)


def internal_errors_raise() -> bool:
    """True under our own test suite (``PLATFORM_OTEL_RAISE_INTERNAL=1``): re-raise, don't log."""
    return os.environ.get("PLATFORM_OTEL_RAISE_INTERNAL") == "1"


def report_internal_error(where: str) -> None:
    """Record an exception raised by platform-otel itself (call from an ``except`` block)."""
    if internal_errors_raise():
        raise
    log_once(
        f"internal:{where}",
        logging.WARNING,
        "platform-otel: internal error in %s (telemetry for this call is incomplete; "
        "the application is not affected; further errors here are not logged)",
        where,
        exc_info=True,
    )


def guard(where: str, default: Any = None) -> Callable[[F], F]:
    """Decorator: run ``fn``; on an exception, report it once and return ``default``."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                report_internal_error(where)
                return default

        return wrapper  # type: ignore[return-value]

    return deco
