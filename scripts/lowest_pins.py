"""Print ``name==floor`` pins for the direct dependencies declared in pyproject.toml.

Used by scripts/test.sh to build ``.venv-lowest``, where the suite runs against the
lowest versions the package claims to support (docs/versions.md). Every requirement
of ``[project].dependencies`` is pinned, plus those of the optional extras named on
the command line (default: the integrations the suite exercises and the instrumented
libraries of the ``dev`` extra). Test tools (pytest, ruff, mypy) keep their newest
versions: they are not what the package supports.

    python scripts/lowest_pins.py            # one pin per line
    python scripts/lowest_pins.py fastapi    # core + the fastapi extra only
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the parser pip itself uses
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXTRAS = ("fastapi", "mcp", "dev")
# From the dev extra, only the libraries the package instruments or is driven by in tests.
DEV_LIBRARIES = ("httpx", "requests", "opentelemetry-distro", "gunicorn")
# Not direct dependencies: upper bounds that the lowest direct versions need and do not
# declare themselves. mcp < 1.24 imports pydantic._internal._typing_extra.eval_type_backport,
# which pydantic 2.14 removed (mcp's FastMCP then fails at import, with or without us).
TRANSITIVE = ("pydantic<2.14",)
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def floors(extras: tuple[str, ...] = DEFAULT_EXTRAS) -> dict[str, str]:
    """``{distribution: lowest declared version}`` for the core and the given extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    requirements: list[str] = list(project["dependencies"])
    for extra in extras:
        for req in optional.get(extra, []):
            name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
            if extra == "dev" and name not in DEV_LIBRARIES:
                continue
            requirements.append(req)
    out: dict[str, str] = {}
    for req in requirements:
        match = _REQ.match(req)
        if match and match.group(1).lower() != "platform-otel":
            out[match.group(1).lower()] = match.group(2)
    return out


def main(argv: list[str]) -> int:
    extras = tuple(argv) or DEFAULT_EXTRAS
    for name, version in floors(extras).items():
        print(f"{name}=={version}")
    if "mcp" in extras:
        print(*TRANSITIVE, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
