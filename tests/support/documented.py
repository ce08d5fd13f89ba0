"""Keep docs/telemetry.md true: every name a test sees emitted must be documented there.

``docs/telemetry.md`` lists each span name pattern, span attribute, metric, metric
attribute and resource attribute in back-quoted table cells. Tests collect what
the code actually emitted (from in-memory exporters or a real receiver) and call
``assert_documented`` on it (exact names), and ``assert_span_names_documented`` on
concrete span names such as ``GET /items/{item_id}``, which must match a documented
pattern such as ``{http.request.method} {http.route}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "DOC",
    "MetricRow",
    "assert_documented",
    "assert_span_names_documented",
    "attribute_families",
    "documented_names",
    "documented_span_name",
    "first_column_names",
    "is_pattern",
    "matches_pattern",
    "matching_span_names",
    "metric_rows",
    "sections",
    "tables",
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


@lru_cache(maxsize=1)
def documented_names() -> frozenset[str]:
    text = DOC.read_text(encoding="utf-8")
    names: set[str] = set()
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            names.update(re.findall(r"`([^`]+)`", line))
    return frozenset(names)


def assert_documented(names: Iterable[str], *, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Fail listing every emitted name missing from docs/telemetry.md."""
    documented = documented_names()
    families = attribute_families(documented)
    missing = sorted(
        n
        for n in set(names)
        if n not in documented
        and not n.startswith(ignore_prefixes)
        and not any(matches_pattern(n, p) for p in families)
    )
    assert not missing, f"emitted but not documented in docs/telemetry.md: {missing}"


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def attribute_families(documented: Iterable[str]) -> list[str]:
    """Patterns such as ``http.request.header.{name}``: a dotted prefix, then one placeholder.

    Span name patterns such as ``{http.route}`` or ``{mcp.method.name}`` are not
    families: they would match any blank-free name.
    """
    return [p for p in documented if re.fullmatch(r"[a-z][a-z0-9_.]*\.\{[a-z_]+\}", p)]


def is_pattern(name: str) -> bool:
    """A documented name with ``{...}`` placeholders, e.g. ``{http.request.method} {http.route}``."""
    return bool(_PLACEHOLDER.search(name))


def matches_pattern(
    name: str, pattern: str, attributes: Mapping[str, object] | None = None
) -> bool:
    """Whether ``name`` is ``pattern`` with each ``{placeholder}`` substituted.

    A placeholder stands for one or more non-blank characters (span name parts
    such as a method, a route template or a tool name contain no blanks). Given
    the span's ``attributes``, a placeholder that names an attribute (a dotted
    name such as ``{http.route}``) must be that attribute's value exactly:
    ``GET /items`` matches ``{http.request.method} {http.route}`` only for a span
    whose ``http.route`` is ``/items``, and never for a span without one.
    Undotted placeholders (``{target}``) match any part.
    """
    parts = _PLACEHOLDER.split(pattern)  # literal, key, literal, key, ..., literal
    regex = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
        elif attributes is not None and "." in part:
            if part not in attributes:
                return False
            regex += re.escape(str(attributes[part]))
        else:
            regex += r"\S+"
    return re.fullmatch(regex, name) is not None


def matching_span_names(name: str, attributes: Mapping[str, object] | None = None) -> list[str]:
    """Every documented span name pattern ``name`` matches (else its exact documented name).

    Patterns tied to the span's attributes (``{http.route}``) come before those with free
    placeholders (``{command}``), which match any blank-free name.
    """

    def free_parts(pattern: str) -> int:
        return sum("." not in key for key in _PLACEHOLDER.findall(pattern))

    patterns = sorted(
        (n for n in documented_names() if is_pattern(n)), key=lambda p: (free_parts(p), p)
    )
    found = [p for p in patterns if matches_pattern(name, p, attributes)]
    return found or ([name] if name in documented_names() else [])


def documented_span_name(name: str, attributes: Mapping[str, object] | None = None) -> str | None:
    """The documented span name pattern (else exact documented name) that ``name`` is, if any."""
    found = matching_span_names(name, attributes)
    return found[0] if found else None


def assert_span_names_documented(
    spans: Iterable[tuple[str, Mapping[str, object] | None]],
) -> None:
    """Fail listing every emitted span name that matches no name or pattern in docs/telemetry.md.

    ``spans`` holds (span name, span attributes) pairs; see :func:`matches_pattern`.
    (Attribute names are matched by :func:`assert_documented`: exactly, or by a dotted
    family pattern such as ``http.request.header.{name}``.)
    """
    missing = sorted({name for name, attrs in spans if documented_span_name(name, attrs) is None})
    assert not missing, f"span names emitted but not documented in docs/telemetry.md: {missing}"


# --- the reference as data: sections, first-column names, metric rows ------------------

_TABLE_SEPARATOR = re.compile(r"\s*\|[-| :]*\|\s*")


def sections() -> dict[str, str]:
    """Each ``## `` section of docs/telemetry.md (its ``###`` subsections included), by title."""
    text = DOC.read_text(encoding="utf-8")
    return {
        m.group(1).strip(): m.group(2)
        for m in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    }


def tables(text: str) -> list[list[list[str]]]:
    """The markdown tables in ``text``: each a list of rows (header first) of stripped cells."""
    out: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            if not _TABLE_SEPARATOR.fullmatch(line):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            out.append(current)
            current = []
    return out


def first_column_names(text: str) -> set[str]:
    """The back-quoted names in the first cell of each table body row (other cells hold values)."""
    return {
        name
        for table in tables(text)
        for row in table[1:]
        for name in re.findall(r"`([^`]+)`", row[0])
    }


@dataclass(frozen=True)
class MetricRow:
    """One row of a metric table: ``| metric | instrument | unit | attributes | Prometheus |``.

    ``unit`` is the OTLP unit (empty for ``(none)``); ``instrument`` starts with
    ``histogram``, ``counter``, ``updowncounter`` or ``gauge``.
    """

    section: str
    name: str
    instrument: str
    unit: str
    attributes: frozenset[str]  # the attributes cell, aliases ("base", "same", ...) resolved
    prometheus: frozenset[str]  # as the sidecar collector's prometheus exporter renders it
    in_process: frozenset[str]  # as the in-process exporter (prometheus_port) renders it


def _prometheus_cell(cell: str) -> list[str]:
    """``x_bucket`, `_sum`, `_count``: a name starting with ``_`` is a suffix of the first's base."""
    names: list[str] = []
    for name in re.findall(r"`([^`]+)`", cell):
        if name.startswith("_") and names:
            base = re.sub(r"_(bucket|sum|count|total)$", "", names[0])
            name = base + name
        names.append(name)
    return names


def _aliases(text: str) -> dict[str, set[str]]:
    """Rows such as ``| base | `gen_ai.operation.name`, ... |``: a plain word standing for names."""
    return {
        row[0]: set(re.findall(r"`([^`]+)`", row[1]))
        for table in tables(text)
        for row in table[1:]
        if len(row) > 1 and "`" not in row[0] and "`" in row[1]
    }


def metric_rows() -> list[MetricRow]:
    """Every metric table row; its Prometheus cell may add ``in-process: `name`...``.

    In the attributes cell, a word of the section's alias rows (``base``, ``device
    attributes``) stands for that row's names, and ``same`` for the previous row's.
    """
    rows = []
    for title, text in sections().items():
        aliases = _aliases(text)
        for table in tables(text):
            header = [h.lower() for h in table[0]]
            if header[:1] != ["metric"] or "prometheus" not in header:
                continue
            col = {h: i for i, h in enumerate(header)}
            previous: set[str] = set()
            for row in table[1:]:
                (name,) = re.findall(r"`([^`]+)`", row[0])
                cell = row[col["attributes"]]
                attributes = set(re.findall(r"`([^`]+)`", cell))
                plain = re.sub(r"`[^`]*`", "", cell)
                for alias, names in aliases.items():
                    if re.search(rf"\b{re.escape(alias)}\b", plain):
                        attributes |= names
                if plain.strip().startswith("same"):
                    attributes |= previous
                previous = attributes
                collector_cell, _, in_process_cell = row[col["prometheus"]].partition("in-process:")
                collector = _prometheus_cell(collector_cell)
                in_process = _prometheus_cell(in_process_cell) or collector
                rows.append(
                    MetricRow(
                        title,
                        name,
                        row[col["instrument"]],
                        "" if row[col["unit"]] == "(none)" else row[col["unit"]].strip("`"),
                        frozenset(attributes),
                        frozenset(collector),
                        frozenset(in_process),
                    )
                )
    return rows
