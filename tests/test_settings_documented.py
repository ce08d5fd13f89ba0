"""docs/configuration.md names every environment variable the package reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_variable_read_by_the_package_is_documented() -> None:
    """Each OTEL_* / PLATFORM_OTEL_* name in src/ appears in docs/configuration.md (or as a per-signal pattern)."""
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    source = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "src" / "platform_otel").rglob("*.py")
    )
    names = set(re.findall(r"\b((?:PLATFORM_)?OTEL_[A-Z0-9_]*[A-Z0-9])\b", source))
    # Per-signal variants are documented as one pattern, e.g. OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT.
    generic = {re.sub(r"_(TRACES|METRICS|LOGS)_", "_", n) for n in names}
    missing = sorted(
        n
        for n in names
        if n not in doc
        and re.sub(r"_(TRACES|METRICS|LOGS)_", "_", n) not in doc
        and not n.endswith("_")  # f-string prefixes such as OTEL_EXPORTER_OTLP_{up}_
    )
    assert generic and not missing, (
        f"read by the package but missing from docs/configuration.md: {missing}"
    )
