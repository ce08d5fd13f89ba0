"""The environment OpenTelemetry's own modules read, validated, without touching ``os.environ``.

Some OpenTelemetry modules read variables when they are imported or when an
object is built, and raise instead of warning on a bad value:

* ``opentelemetry.sdk.trace`` raises ``ValueError`` *at import* on, e.g.,
  ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=abc`` (and ``SpanLimits()`` on any bad limit);
* the logs SDK builds ``LogRecordLimits()`` from the same kind of variables;
* ``opentelemetry.propagate`` raises at import on an ``OTEL_PROPAGATORS`` entry
  it cannot load (a typo, or ``b3`` without its package), which breaks every
  library that imports it.

``platform_otel._config`` reports each bad value once, naming the variable and
the value used instead. So that these modules then use that value too, and so
that nothing is written to the process environment (which child processes and
the application would inherit), :func:`install` arms an import hook for the
modules listed in :data:`MODULES`: when one is first imported, its ``os`` /
``environ`` name is bound to a read-only :class:`EnvironView`, the real
environment with the rejected values left out (and, for the contrib HTTP
instrumentations, ``OTEL_SEMCONV_STABILITY_OPT_IN=http,database`` when it is unset).

A module imported before ``init()`` keeps the real environment: it was imported
with it, so nothing at import failed; what can still fail later is caught and
reported by ``init()``.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["MODULES", "EnvironView", "install", "installed_overrides"]

#: Modules that read the environment at import or per object, and raise on bad values.
#: (Module paths, not names imported from them: their ``os``/``environ`` is what changes.)
MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk._logs._internal",
    "opentelemetry.propagate",
    "opentelemetry.instrumentation._semconv",
)


class EnvironView(Mapping[str, str]):
    """``os.environ`` as it is now, with ``overrides`` applied (None: the variable is absent)."""

    def __init__(self, overrides: Mapping[str, str | None]) -> None:
        self._overrides = dict(overrides)

    def __getitem__(self, key: str) -> str:
        if key in self._overrides:
            value = self._overrides[key]
            if value is None:
                raise KeyError(key)
            return value
        return os.environ[key]

    def __iter__(self) -> Iterator[str]:
        hidden = {k for k, v in self._overrides.items() if v is None}
        extra = [k for k, v in self._overrides.items() if v is not None and k not in os.environ]
        yield from (k for k in os.environ if k not in hidden)
        yield from extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


class _OsView(types.ModuleType):
    """The ``os`` module with ``environ`` replaced by an :class:`EnvironView`."""

    def __init__(self, environ: EnvironView) -> None:
        super().__init__("os")
        self.environ = environ

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _builtins_for(environ: EnvironView) -> dict[str, Any]:
    view = _OsView(environ)
    real_import = builtins.__import__

    def view_import(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> Any:
        if name == "os" and level == 0:
            return view
        return real_import(name, globals, locals, fromlist, level)

    return {**vars(builtins), "__import__": view_import}


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any, module_builtins: dict[str, Any]) -> None:
        self._loader = loader
        self._builtins = module_builtins

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        module: types.ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = self._builtins  # read by the module's import statements
        self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        # get_source, is_package, get_resource_reader...: the real loader's
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, overrides: Mapping[str, str | None]) -> None:
        self.overrides = dict(overrides)
        self._builtins = _builtins_for(EnvironView(self.overrides))

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, self._builtins)
        return spec


_lock = threading.Lock()
_finder: _Finder | None = None


def install(overrides: Mapping[str, str | None]) -> None:
    """Arm the import hook (once per process; a later call with other overrides is ignored).

    Idempotent and cheap: the hook answers only for :data:`MODULES`. Nothing is
    imported here, and ``os.environ`` is not modified.
    """
    global _finder
    with _lock:
        if _finder is not None:
            return
        _finder = _Finder(overrides)
        sys.meta_path.insert(0, _finder)


def installed_overrides() -> Mapping[str, str | None]:
    """What the hooked modules see differently from ``os.environ`` (for doctor and tests)."""
    return dict(_finder.overrides) if _finder is not None else {}
