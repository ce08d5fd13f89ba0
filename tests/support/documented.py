"""Keep docs/telemetry.md true: every name a test sees emitted must be documented there.

``docs/telemetry.md`` lists each span name pattern, span attribute, metric, metric
attribute and resource attribute in back-quoted table cells. Tests collect what
the code actually emitted (from in-memory exporters or a real receiver) and call
``assert_documented`` on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

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
    missing = sorted(
        n for n in set(names) if n not in documented_names() and not n.startswith(ignore_prefixes)
    )
    assert not missing, f"emitted but not documented in docs/telemetry.md: {missing}"
