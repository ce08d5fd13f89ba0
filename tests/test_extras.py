"""The data-store extras (``postgres``, ``mysql``, ``redis``, ``memcached``) are installable.

Offline and fast: ``pip install --dry-run --no-index 'platform-otel[EXTRA]'`` succeeds
only when every requirement of the extra, and of everything it pulls, is already
installed at a version that satisfies it - i.e. when the environment that
``scripts/test.sh`` built with ``pip install -e '.[dev,stores]'`` is one consistent
resolution of them. ``scripts/check_extras.py`` checks the same from the package
index, as in a fresh virtual environment.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from tests.support.fixtures import REPO_ROOT

EXTRAS = ["postgres", "mysql", "redis", "memcached"]


def _declared() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def test_each_store_extra_pulls_its_instrumentation() -> None:
    declared = _declared()
    wanted = {
        "postgres": [
            "opentelemetry-instrumentation-psycopg",
            "opentelemetry-instrumentation-asyncpg",
        ],
        "mysql": ["opentelemetry-instrumentation-pymysql"],
        "redis": ["opentelemetry-instrumentation-redis"],
        "memcached": ["opentelemetry-instrumentation-pymemcache"],
    }
    for extra, packages in wanted.items():
        names = [r.split(">")[0].split("=")[0].split("[")[0] for r in declared[extra]]
        assert set(packages) <= set(names), (extra, declared[extra])
    assert declared["stores"] == ["platform-otel[postgres,mysql,redis,memcached]"]


@pytest.mark.parametrize("extra", EXTRAS)
def test_installed_environment_satisfies_the_extra(extra: str) -> None:
    try:
        distribution("platform-otel")
    except PackageNotFoundError:
        pytest.skip("platform-otel is not installed (pip install -e '.[dev,stores]')")
    missing = []
    for requirement in _declared()[extra]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0]
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    if missing:
        pytest.skip(
            f"{missing} not installed: pip install -e '.[dev,{extra}]' (scripts/test.sh does)"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
         f"platform-otel[{extra}]"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
