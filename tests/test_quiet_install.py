"""A first install and a first run print no deprecation warnings.

Built the way ``pip install`` builds it for a user (an isolated build environment with
the ``[build-system]`` requirements at their newest), installed from that wheel, then
imported and initialized in a fresh interpreter. setuptools deprecates, among others,
the ``project.license`` TOML table (an SPDX string is the current form); pip shows a
backend's warnings with ``-v``, so the build runs verbose and its whole output is read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DEPRECATION = re.compile(r"deprecat", re.IGNORECASE)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "src")


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PLATFORM_OTEL_"))}
    env.pop("PIP_NO_BUILD_ISOLATION", None)  # build as a user's pip does
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        env=_pip_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _copy_sources(dest: Path) -> Path:
    """The files a build reads, without build products (a clean checkout's state)."""
    dest.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(
                path,
                dest / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build"),
            )
        else:
            shutil.copy2(path, dest / name)
    return dest


def _deprecations(output: str) -> list[str]:
    return [line for line in output.splitlines() if DEPRECATION.search(line)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The package built into a wheel from a copy of the sources, installed into a fresh directory.

    Returns the directory and the combined output of building and installing.
    """
    tmp = tmp_path_factory.mktemp("quiet-install")
    source = _copy_sources(tmp / "platform-otel")
    wheels = tmp / "wheels"
    build = _pip("wheel", "--no-deps", "-v", "-w", str(wheels), str(source))
    output = build.stdout + build.stderr
    if build.returncode != 0 and "No matching distribution found for setuptools" in output:
        pytest.skip("the build requirements cannot be fetched (no package index reachable)")
    assert build.returncode == 0, output
    (wheel,) = wheels.glob("platform_otel-*.whl")
    site = tmp / "site"
    install = _pip("install", "--no-deps", "--no-compile", "--target", str(site), str(wheel))
    assert install.returncode == 0, install.stdout + install.stderr
    return site, output + install.stdout + install.stderr


def test_build_and_install_print_no_deprecation_warning(installed: tuple[Path, str]) -> None:
    """No line of the verbose build (setuptools, wheel, pip) nor of the install mentions a deprecation."""
    _, output = installed
    assert "Successfully built platform-otel" in output, output
    assert not _deprecations(output), "\n".join(_deprecations(output))


def test_editable_install_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """``pip install -e .`` (the development setup, scripts/test.sh) is quiet too, verbose output included."""
    source = _copy_sources(tmp_path / "platform-otel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = _pip("--python", str(python), "install", "--no-deps", "-v", "-e", str(source))
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and "No matching distribution found for setuptools" in output:
        pytest.skip("the build requirements cannot be fetched (no package index reachable)")
    assert proc.returncode == 0, output
    assert "Successfully installed platform-otel" in output, output
    assert not _deprecations(output), "\n".join(_deprecations(output))


FIRST_RUN = r"""
import json, logging, sys, warnings

ours = []


def record(message, category, filename, lineno, file=None, line=None):
    ours.append({"category": category.__name__, "message": str(message), "file": filename, "line": lineno})


warnings.simplefilter("always")
warnings.showwarning = record

import platform_otel

package = platform_otel.__file__
telemetry = platform_otel.init(service_name="quiet-first-run")

from fastapi import FastAPI
from fastapi.testclient import TestClient

app = FastAPI()


@app.get("/hello")
def hello() -> dict:
    logging.getLogger("app").warning("hello")
    return {"ok": True}


with TestClient(app) as client:
    client.get("/hello")
with platform_otel.pipeline("quiet").stage("first", item_id="1"):
    pass
platform_otel.shutdown()
print("RESULT " + json.dumps({"package": package, "warnings": ours}))
"""


def test_first_import_and_init_warn_nothing(installed: tuple[Path, str], tmp_path: Path) -> None:
    """A fresh interpreter imports the installed wheel, runs init() and a request: no warning from our code.

    Every warning is recorded (filter ``always``, so none is hidden by the default
    filters or by once-per-location); the test fails on any whose code location is in
    platform_otel, and on any warning line on stderr under the default filters.
    """
    pytest.importorskip("fastapi", reason="platform-otel[fastapi] is not installed")
    site, _ = installed
    env = _pip_env()
    env.update(PYTHONPATH=str(site), OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    script = tmp_path / "first_run.py"
    script.write_text(FIRST_RUN, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    package_dir = str(Path(result["package"]).parent)
    assert package_dir.startswith(str(site)), result["package"]  # the installed wheel, not src/
    ours = [w for w in result["warnings"] if w["file"].startswith(package_dir)]
    assert not ours, json.dumps(ours, indent=1)

    # The same run with the interpreter's default warning filters, as a user sees it.
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            "import platform_otel; platform_otel.init(); platform_otel.shutdown()",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr
    assert not re.search(r"\w*Warning: ", plain.stderr), plain.stderr
