"""docs/configuration.md stays true: every variable and ``init()`` keyword, with its real default.

The page's setting tables have four columns, ``| argument | variable | default | meaning |``:
the ``init()`` keyword, the environment variables (back-quoted; ``{TRACES,METRICS,LOGS}``
stands for the three per-signal variables), and the default. A default cell that starts
with a back-quoted value states exactly what leaving the setting out gives; these tests
hold it to ``load_settings()`` (src/platform_otel/_config.py), the one place settings
are parsed.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import opentelemetry

import platform_otel
from platform_otel._config import InitOptions, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
HEADER = ["argument", "variable", "default", "meaning"]
_VARIABLE = re.compile(r"(?:PLATFORM_)?OTEL_[A-Z0-9_{},]*[A-Z0-9}]")
_SOURCE_VARIABLE = re.compile(r"\b((?:PLATFORM_)?OTEL_[A-Z0-9_]*[A-Z0-9])\b")
_SIGNAL = re.compile(r"_(TRACES|METRICS|LOGS)_")


@dataclass(frozen=True)
class Row:
    arguments: tuple[str, ...]
    variables: tuple[str, ...]
    default: str | None  # the back-quoted value a default cell starts with; None: unset / prose

    def __str__(self) -> str:
        return f"{self.arguments} {self.variables} default={self.default!r}"


def _expand(name: str) -> list[str]:
    """``OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`` -> the three variables."""
    match = re.search(r"\{([A-Z,]+)\}", name)
    if not match:
        return [name]
    return [
        expanded
        for part in match.group(1).split(",")
        for expanded in _expand(name[: match.start()] + part + name[match.end() :])
    ]


@lru_cache(maxsize=1)
def rows() -> tuple[Row, ...]:
    """Every row of the page's setting tables."""
    out: list[Row] = []
    header: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        if re.fullmatch(r"\|[-| :]*\|", line.strip()):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if header != HEADER:
            continue
        quoted = [re.findall(r"`([^`]+)`", cell) for cell in cells]
        out.append(
            Row(
                arguments=tuple(quoted[0]),
                variables=tuple(
                    v for name in quoted[1] if _VARIABLE.fullmatch(name) for v in _expand(name)
                ),
                default=quoted[2][0] if cells[2].startswith("`") else None,
            )
        )
    return tuple(out)


def documented_variables() -> set[str]:
    return {v for row in rows() for v in row.variables}


def package_source() -> str:
    return "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "src" / "platform_otel").rglob("*.py")
    )


@lru_cache(maxsize=1)
def opentelemetry_source() -> str:
    """The installed OpenTelemetry packages' code (API, SDK, exporters, instrumentations)."""
    roots = [Path(p) for p in opentelemetry.__path__]
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for r in roots for p in r.rglob("*.py")
    )


# Environments some variables are read in only: OTEL_EXPORTER_PROMETHEUS_PORT needs the
# prometheus metrics exporter.
CONTEXTS: tuple[dict[str, str], ...] = ({}, {"OTEL_METRICS_EXPORTER": "prometheus"})


def reading_context(variable: str) -> dict[str, str] | None:
    """The first of CONTEXTS in which load_settings() reads ``variable`` (a probe value changes
    the settings or is reported), or None when it never does (the SDK or init() reads it)."""
    for context in CONTEXTS:
        probed = load_settings({**context, variable: "@probe("})
        if probed != load_settings(context) or any(p.variable == variable for p in probed.problems):
            return context
    return None


def read_by_load_settings(variable: str) -> bool:
    return reading_context(variable) is not None


def _as_argument(options_field: dataclasses.Field[Any], text: str) -> Any:
    """A documented default as the keyword's value (bool, number or string)."""
    kind = str(options_field.type)
    if kind.startswith("bool"):
        assert text in ("true", "false"), text
        return text == "true"
    if kind.startswith(("float", "int")):
        return float(text)
    return text


# --- both ways: variables --------------------------------------------------------------


def test_every_variable_read_by_the_package_is_documented() -> None:
    """Each OTEL_* / PLATFORM_OTEL_* name in src/ is in the variable column of a setting table."""
    names = set(_SOURCE_VARIABLE.findall(package_source()))
    # f-string prefixes such as OTEL_EXPORTER_OTLP_{up}_ (per-signal names) end with "_".
    missing = sorted(n for n in names if not n.endswith("_") and n not in documented_variables())
    assert names and not missing, f"read by the package, not in docs/configuration.md: {missing}"


def test_every_documented_variable_is_read() -> None:
    """Each documented variable is read by platform-otel, or by the OpenTelemetry SDK it configures."""
    ours = package_source()
    per_signal = {_SIGNAL.sub("_{up}_", v) for v in documented_variables()}
    not_read = sorted(
        v
        for v in documented_variables()
        if v not in ours
        and not (_SIGNAL.search(v) and _SIGNAL.sub("_{up}_", v) in ours)
        and v not in opentelemetry_source()
    )
    assert per_signal and not not_read, f"documented, read by nothing installed: {not_read}"


# --- init() keywords -------------------------------------------------------------------


def test_every_init_keyword_is_documented() -> None:
    """The argument column names exactly init()'s keywords, which are InitOptions' fields."""
    keywords = set(inspect.signature(platform_otel.init).parameters)
    assert keywords == {f.name for f in dataclasses.fields(InitOptions)}
    documented = {a for row in rows() for a in row.arguments}
    assert keywords - documented == set(), f"not documented: {sorted(keywords - documented)}"
    assert documented - keywords == set(), f"not init() keywords: {sorted(documented - keywords)}"


# --- defaults --------------------------------------------------------------------------


def test_stated_defaults_are_what_load_settings_gives() -> None:
    """Setting a variable (or keyword) to its documented default changes nothing, and is no problem.

    Checked for every variable load_settings() reads (OTEL_PYTHON_CONTEXT, the TLS files,
    PLATFORM_OTEL_HANDLE_SIGTERM and the like are read by the SDK or at init() instead).
    """
    baseline: Settings = load_settings({})
    fields = {f.name: f for f in dataclasses.fields(InitOptions)}
    checked: list[str] = []
    wrong: list[str] = []
    for row in rows():
        if row.default is None:
            continue
        for variable in row.variables:
            context = reading_context(variable)
            if context is None:
                continue
            settings = load_settings({**context, variable: row.default})
            if settings != load_settings(context) or settings.problems:
                wrong.append(f"{variable}={row.default!r}: {list(map(str, settings.problems))}")
            checked.append(variable)
        for argument in row.arguments:
            if argument == "exporters" or argument not in fields:
                continue  # a mapping per signal; its default is each OTEL_*_EXPORTER's
            value = _as_argument(fields[argument], row.default)
            settings = load_settings({}, InitOptions(**{argument: value}))
            if settings != baseline or settings.problems:
                wrong.append(f"{argument}={value!r}: {list(map(str, settings.problems))}")
            checked.append(argument)
    assert not wrong, f"documented defaults that differ from load_settings({{}}): {wrong}"
    assert len(checked) >= 40, checked  # the tables keep their back-quoted defaults


def test_unset_defaults_are_unset() -> None:
    """A setting documented as unset is read by load_settings() without a value of its own there."""
    baseline = load_settings({})
    assert baseline.service_version is None and baseline.environment is None
    assert baseline.prometheus_port is None and baseline.gpu_device is None
    assert baseline.disabled_integrations == () and baseline.http_excluded_urls == ()
    assert baseline.traces.headers == {} and baseline.traces.insecure is None
    unset = [r for r in rows() if r.default is None and r.variables]
    read = [v for r in unset for v in r.variables if read_by_load_settings(v)]
    assert "PLATFORM_OTEL_SERVICE_VERSION" in read and "PLATFORM_OTEL_GPU_DEVICE" in read, read


def test_precedence_argument_over_environment_over_default() -> None:
    """The page's rule, on the rows with both: the keyword wins over a different variable value."""
    env_value = {"endpoint": "http://env:4317", "log_level": "debug", "shutdown_timeout": "7"}
    arg_value = {"endpoint": "http://arg:4317", "log_level": "error", "shutdown_timeout": 9.0}
    for row in rows():
        for argument in set(row.arguments) & set(env_value):
            variable = row.variables[-1]  # the generic variable of a per-signal row
            from_env = load_settings({variable: env_value[argument]})
            both = load_settings(
                {variable: env_value[argument]}, InitOptions(**{argument: arg_value[argument]})
            )
            assert from_env != load_settings({}), (argument, variable)
            assert both == load_settings({}, InitOptions(**{argument: arg_value[argument]}))
