"""Every OpenTelemetry instrumentation package installed beside platform-otel, enabled by ``init()``.

``opentelemetry-instrument`` enables each instrumentor registered under the
``opentelemetry_instrumentor`` entry points; ``init()`` does the same, with the
providers it built, so ``pip install opentelemetry-instrumentation-redis`` is
all a service needs for Redis spans. The differences, and why:

* **Cheap at start-up.** An entry point is loaded (which imports the
  instrumented library) only when the library is installed at a supported
  version, checked from package metadata alone (the package's ``instruments``
  requirements, with ``opentelemetry.instrumentation.dependencies``). When the library is not imported yet,
  the instrumentor is enabled by a post-import hook the moment the application
  imports it, so a service pays nothing for a driver it never uses.
* **Own integrations first.** ``fastapi``, ``starlette``, ``asgi``, ``httpx``,
  ``requests`` and ``logging`` are covered by platform-otel's own integrations;
  their entry points are skipped, so no request is traced twice.
* **Quiet and safe.** A missing or unsupported library gives one info line; a
  failing instrumentor gives one warning; nothing raises into the application.
* **Configurable the OpenTelemetry way.** ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
  (and ``init(disable=...)`` / ``PLATFORM_OTEL_DISABLE``) names entry points to
  skip; ``*`` skips all of them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, PackageNotFoundError, entry_points
from typing import TYPE_CHECKING, Any

from .._safety import log_once, report_internal_error
from . import IntegrationStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from . import InstrumentationContext

__all__ = [
    "GROUP",
    "OWN_INTEGRATIONS",
    "Plan",
    "defer_until_loaded",
    "disable_all",
    "enable_installed",
    "plan",
    "retry_deferred",
]

GROUP = "opentelemetry_instrumentor"

# Entry-point name -> the platform-otel integration that already covers it. FastAPI apps are
# ASGI/Starlette apps: instrumenting those layers too would give each request twice.
OWN_INTEGRATIONS: dict[str, str] = {
    "fastapi": "fastapi",
    "starlette": "fastapi",
    "asgi": "fastapi",
    "httpx": "httpx",
    "requests": "requests",
    "logging": "logging",
}

_WILDCARD = "*"

# Instrumentation modules installed because platform-otel itself depends on their package.
# Such a package may register an entry point for a library the user never chose (the httpx
# package's ``httpx2``): its library being absent is logged at debug level, not info.
_BUNDLED_MODULES = frozenset(
    {
        "opentelemetry.instrumentation.fastapi",
        "opentelemetry.instrumentation.httpx",
        "opentelemetry.instrumentation.requests",
    }
)


@dataclass(frozen=True)
class Plan:
    """What ``init()`` will do with one entry point, decided without importing anything."""

    name: str
    distribution: str  # "opentelemetry-instrumentation-redis 0.66b2"
    action: str  # "enable", "skip"
    reason: str
    modules: tuple[str, ...] = ()  # import names of the instrumented library (for deferral)
    entry_point: EntryPoint | None = None
    quiet: bool = False  # a skip not worth an info line (see _BUNDLED_MODULES)


_active: dict[str, Any] = {}  # name -> instrumentor instance we instrumented
_pending: dict[str, str] = {}  # name -> module whose import will enable it
_states: dict[str, IntegrationStatus] = {}
# key -> (module, attribute, action, generation): enabling put off because ``module`` was
# still being imported (``attribute`` not defined yet) when an import hook fired
_retry: dict[str, tuple[str, str, Callable[[], object], int]] = {}


def _dist_label(dist: Distribution | None) -> str:
    if dist is None:
        return "?"
    try:
        return f"{dist.metadata['Name']} {dist.version}"
    except Exception:
        return "?"


def _instrumented_requirements(dist: Distribution) -> tuple[list[Any], list[Any]]:
    """The ``instruments`` and ``instruments-any`` requirements of an instrumentation package.

    The same split as ``get_dist_dependency_conflicts``, from one read of the metadata
    (parsing a package's metadata is the costly part of start-up here).
    """
    from packaging.requirements import Requirement

    every: list[Any] = []
    any_of: list[Any] = []
    for line in dist.requires or ():
        if "instruments" not in line:
            continue
        try:
            req = Requirement(line)
        except Exception:
            continue
        marker = req.marker
        if marker is None:
            continue
        if marker.evaluate({"extra": "instruments"}):
            every.append(req)
        if marker.evaluate({"extra": "instruments-any"}):
            any_of.append(req)
    return every, any_of


def _top_level_modules(dist_name: str) -> tuple[str, ...]:
    """Import names a distribution provides (``PyMySQL`` -> ``pymysql``), from its metadata."""
    try:
        from importlib.metadata import distribution

        dist = distribution(dist_name)
    except PackageNotFoundError:
        return ()
    top = dist.read_text("top_level.txt")
    if top:
        return tuple(m.strip() for m in top.split() if m.strip() and not m.startswith("_"))
    modules: list[str] = []
    for f in dist.files or ():
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or ".." in parts:
            continue
        head = parts[0]
        if len(parts) == 1:
            if not head.endswith(".py"):
                continue
            head = head[:-3]
        if head.isidentifier() and not head.startswith("_") and head not in modules:
            modules.append(head)
    return tuple(modules)


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _requirement_text(requirement: object) -> str:
    """``redis >= 2.6`` from a requirement string or object, without its ``extra`` marker."""
    text = str(requirement)
    return text.split(";", 1)[0].strip()


def _conflict_text(conflict: Any) -> str:
    """One readable line from a public ``DependencyConflict``: what is needed, what is there."""
    required = getattr(conflict, "required", None)
    found = getattr(conflict, "found", None)
    if required:
        needed = _requirement_text(required)
        return f"needs {needed}, found {found}" if found else f"needs {needed}, not installed"
    required_any = [_requirement_text(r) for r in getattr(conflict, "required_any", None) or ()]
    found_any = list(getattr(conflict, "found_any", None) or ())
    if required_any:
        needed = " or ".join(required_any)
        return (
            f"needs {needed}, found {', '.join(found_any)}"
            if found_any
            else f"needs {needed}, not installed"
        )
    return str(conflict) or "dependency conflict"


def _disabled_names(disabled: Iterable[str]) -> set[str]:
    return {d.strip() for d in disabled if d and d.strip()}


def plan(disabled: Iterable[str] = (), *, describe: bool = False) -> list[Plan]:
    """Decide, from metadata only, what happens to each registered instrumentation.

    ``describe`` (``platform-otel doctor``) also names each package and library version,
    which costs more metadata reads than ``init()`` should pay.
    """
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    off = _disabled_names(disabled)
    plans: list[Plan] = []
    seen: set[str] = set()
    for ep in entry_points(group=GROUP):
        name = ep.name
        if name in seen:  # the same package seen twice on sys.path
            continue
        seen.add(name)
        dist = getattr(ep, "dist", None)
        label = _dist_label(dist) if describe else ""
        if name in off or _WILDCARD in off:
            plans.append(Plan(name, label, "skip", "disabled by configuration"))
            continue
        if name in OWN_INTEGRATIONS:
            plans.append(
                Plan(
                    name,
                    label,
                    "skip",
                    f"covered by platform-otel's own {OWN_INTEGRATIONS[name]!r} integration",
                )
            )
            continue
        try:
            every, any_of = _instrumented_requirements(dist) if dist is not None else ([], [])
            conflict = get_dependency_conflicts(every, any_of)
        except Exception as exc:
            plans.append(Plan(name, label, "skip", f"cannot read its metadata: {exc!r}"))
            continue
        if conflict is not None:
            absent = not (getattr(conflict, "found", None) or getattr(conflict, "found_any", None))
            quiet = absent and ep.module in _BUNDLED_MODULES
            plans.append(Plan(name, label, "skip", _conflict_text(conflict), quiet=quiet))
            continue
        required = [r.name for r in [*every, *any_of]]
        # One package may register several instrumentors (httpx and httpx2): the library
        # named like the entry point is the one to wait for.
        same = [r for r in [*every, *any_of] if _normalize(r.name) == _normalize(name)]
        modules: tuple[str, ...] = ()
        libraries: list[str] = []
        for req_name in [r.name for r in same] or required:
            found = _top_level_modules(req_name)
            if found:
                libraries.append(req_name)
                modules += found
        if same and not libraries:
            # the package's other library is installed, not this entry point's: never load it
            needed = " or ".join(_requirement_text(r) for r in same)
            quiet = ep.module in _BUNDLED_MODULES
            plans.append(Plan(name, label, "skip", f"needs {needed}, not installed", quiet=quiet))
            continue
        detail = ", ".join(_library_versions(libraries)) if describe else ", ".join(libraries)
        plans.append(Plan(name, label, "enable", detail or "no library requirement", modules, ep))
    return plans


def _library_versions(names: list[str]) -> list[str]:
    from importlib.metadata import version

    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            continue
    return out


def enable_installed(ctx: InstrumentationContext) -> list[IntegrationStatus]:
    """Enable every installed instrumentation ``init()`` should; never raises.

    Returns one :class:`IntegrationStatus` per registered entry point, named
    ``"<entry point> (contrib)"`` so it does not shadow an own integration.
    """
    try:
        plans = plan(ctx.settings.disabled_integrations)
    except Exception:
        report_internal_error("instrumentation entry points")
        return []
    from . import _generation

    # (The stable HTTP and database names are asked for without touching os.environ:
    # OTEL_SEMCONV_STABILITY_OPT_IN as the contrib modules see it, platform_otel._sdk_env.)
    out: list[IntegrationStatus] = []
    for p in plans:
        try:
            status = _apply(p, ctx, _generation[0])
        except Exception as exc:  # never into the application
            status = _failed(p.name, exc)
        _states[p.name] = status
        out.append(status)
    if _retry:
        retry_deferred()
    return out


def _label(name: str) -> str:
    return f"{name} (contrib)"


def _apply(p: Plan, ctx: InstrumentationContext, generation: int) -> IntegrationStatus:
    if p.action != "enable" or p.entry_point is None:
        if p.reason != "disabled by configuration" and not p.reason.startswith("covered by"):
            log_once(
                f"contrib-skip:{p.name}",
                logging.DEBUG if p.quiet else logging.INFO,
                "platform-otel: %s instrumentation not enabled: %s",
                p.name,
                p.reason,
            )
        return IntegrationStatus(_label(p.name), False, p.reason)
    if p.name in _active:
        return IntegrationStatus(_label(p.name), True, "already active")
    imported = [m for m in p.modules if m in sys.modules]
    importable = [m for m in p.modules if importlib.util.find_spec(m) is not None]
    if importable and not imported:
        import wrapt

        ep = p.entry_point

        def on_import(_module: object) -> None:
            from . import _generation

            # not after shutdown() / a later init(); once per name however many modules fire
            if generation != _generation[0] or p.name not in _pending:
                return
            module = sys.modules.get(ep.module)
            if module is not None and not hasattr(module, ep.attr):
                # The instrumentation's own module imports the library while it is itself
                # being imported (opentelemetry.instrumentation.httpx imports httpx2):
                # loading it now would fail; retried once that import has finished.
                defer_until_loaded(
                    p.name,
                    ep.module,
                    ep.attr,
                    lambda: _enable_now(p.name, ep, ctx) if p.name in _pending else None,
                )
                return
            _enable_now(p.name, ep, ctx)

        _pending[p.name] = importable[0]
        for module in importable:
            wrapt.register_post_import_hook(on_import, module)
        return IntegrationStatus(_label(p.name), True, f"waiting for import of {importable[0]!r}")
    # imported already, or no import name known for the library: enable now
    return _enable_now(p.name, p.entry_point, ctx)


def defer_until_loaded(key: str, module: str, attribute: str, action: Callable[[], object]) -> None:
    """Run ``action`` once ``module`` has finished importing (defines ``attribute``).

    For an import hook that fires while an instrumentation module is itself being
    imported: ``opentelemetry.instrumentation.httpx`` imports both httpx and httpx2 at
    its top, and each has an integration waiting for its import.
    """
    from . import _generation

    _retry[key] = (module, attribute, action, _generation[0])


def retry_deferred() -> None:
    """Run what :func:`defer_until_loaded` put off whose module is complete; never raises.

    Called whenever an instrumentation module may have finished importing: after
    ``init()``, after each entry point loaded here and after each contrib module that
    platform-otel's own integrations import.
    """
    from . import _generation

    for key, (module_name, attribute, action, generation) in list(_retry.items()):
        module = sys.modules.get(module_name)
        if module is not None and not hasattr(module, attribute):
            continue  # still importing
        if _retry.pop(key, None) is None or generation != _generation[0]:
            continue  # done meanwhile, or shut down / initialised again since
        try:
            action()
        except Exception as exc:
            _failed(key, exc)


def _enable_now(name: str, ep: EntryPoint, ctx: InstrumentationContext) -> IntegrationStatus:
    _pending.pop(name, None)
    try:
        from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

        instrumentor = ep.load()()
        if instrumentor.is_instrumented_by_opentelemetry:
            # the application or opentelemetry-instrument already did it: never twice
            status = IntegrationStatus(
                _label(name), True, "already instrumented by the application"
            )
        else:
            conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
            if conflict is not None:
                reason = _conflict_text(conflict)
                log_once(
                    f"contrib-skip:{name}",
                    logging.INFO,
                    "platform-otel: %s instrumentation not enabled: %s",
                    name,
                    reason,
                )
                status = IntegrationStatus(_label(name), False, reason)
            else:
                instrumentor.instrument(
                    tracer_provider=ctx.tracer_provider,
                    meter_provider=ctx.meter_provider,
                    skip_dep_check=True,
                )
                _active[name] = instrumentor
                status = IntegrationStatus(_label(name), True, "active")
    except Exception as exc:
        status = _failed(name, exc)
    _states[name] = status
    if _retry:
        retry_deferred()
    return status


def _failed(name: str, exc: BaseException) -> IntegrationStatus:
    # A third-party instrumentor failing is not platform-otel's bug: one warning, no raise.
    log_once(
        f"contrib-fail:{name}",
        logging.WARNING,
        "platform-otel: %s instrumentation disabled: %r",
        name,
        exc,
    )
    return IntegrationStatus(_label(name), False, f"failed: {exc!r}")


def states() -> dict[str, IntegrationStatus]:
    """Current state of each entry point seen by the last ``init()``."""
    return dict(_states)


def disable_all() -> None:
    """Undo what ``init()`` enabled here (shutdown and tests); pending hooks go stale."""
    _pending.clear()
    _states.clear()
    _retry.clear()
    for name, instrumentor in list(_active.items()):
        try:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        except Exception:
            report_internal_error(f"uninstrument {name}")
        _active.pop(name, None)
