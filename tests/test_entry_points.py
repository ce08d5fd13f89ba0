"""``init()`` and the ``opentelemetry_instrumentor`` entry points (issue 17).

Real installed distributions, made in a temporary ``site`` directory (``*.dist-info``
with ``METADATA``, ``entry_points.txt`` and ``top_level.txt``, exactly what pip
writes), found by ``importlib.metadata`` through ``PYTHONPATH``. Each instrumentor is
a real ``BaseInstrumentor`` that writes what it was called with to stdout. Every
scenario runs ``init()`` in a fresh interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fixtures import RunPython

INSTRUMENTOR = """
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

class Instrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self):
        return {deps!r}

    def _instrument(self, **kwargs):
        {body}
        import json, sys
        import platform_otel
        telemetry = platform_otel.get_telemetry()
        print("INSTRUMENTED " + json.dumps({{
            "name": {name!r},
            "tracer_provider": kwargs.get("tracer_provider") is telemetry.tracer_provider,
            "meter_provider": kwargs.get("meter_provider") is telemetry.meter_provider,
            "library_imported": {library!r} in sys.modules,
        }}), flush=True)

    def _uninstrument(self, **kwargs):
        print("UNINSTRUMENTED " + {name!r}, flush=True)
"""


def _dist(
    site: Path, name: str, version: str, *, requires: list[str] = (), entry: str = "", top: str = ""
) -> None:  # type: ignore[assignment]
    info = site / f"{name.lower().replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    if entry:
        (info / "entry_points.txt").write_text(f"[opentelemetry_instrumentor]\n{entry}\n")
    if top:
        (info / "top_level.txt").write_text(top + "\n")


def _instrumentation(
    site: Path,
    name: str,
    requirement: str,
    library: str,
    *,
    body: str = "pass",
) -> None:
    """An ``opentelemetry-instrumentation-<name>`` package instrumenting ``requirement``."""
    module = f"fake_instr_{name}"
    (site / f"{module}.py").write_text(
        INSTRUMENTOR.format(deps=(requirement,), body=body, name=name, library=library)
    )
    _dist(
        site,
        f"fake_instrumentation_{name}",
        "0.1",
        requires=[f"{requirement}; extra == 'instruments'"],
        entry=f"{name} = {module}:Instrumentor",
        top=module,
    )


def _library(site: Path, dist: str, module: str, version: str) -> None:
    (site / f"{module}.py").write_text(f"print('IMPORTED {module}', flush=True)\n")
    _dist(site, dist, version, top=module)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    # A library installed at a supported version, imported by the app after init().
    _library(site, "Fake-Lib-A", "fakelib_a", "2.0")
    _instrumentation(site, "fakea", "Fake-Lib-A >= 1.0", "fakelib_a")
    # Same library, required at a version that is not installed.
    _instrumentation(site, "fakeold", "Fake-Lib-A >= 99", "fakelib_a")
    # A library that is not installed at all.
    _instrumentation(site, "fakemissing", "fake-lib-missing >= 1", "fakelib_missing")
    # Installed and already imported before init(), but the instrumentor fails.
    _library(site, "fake-lib-b", "fakelib_b", "1.0")
    _instrumentation(
        site, "fakeboom", "fake-lib-b >= 1", "fakelib_b", body="raise RuntimeError('boom')"
    )
    # Already imported before init(): enabled at once.
    _library(site, "fake-lib-c", "fakelib_c", "3.1")
    _instrumentation(site, "fakec", "fake-lib-c >= 3", "fakelib_c")
    return site


APP = """
import json, logging, sys
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append((record.levelname, record.getMessage()))
logging.getLogger("platform_otel").addHandler(Keep())
logging.getLogger("platform_otel").setLevel(logging.INFO)
import fakelib_b, fakelib_c
import platform_otel
telemetry = platform_otel.init(**json.loads(sys.argv[1]))
print("INIT_DONE", flush=True)
states = {i.name: [i.active, i.reason] for i in telemetry.integrations if i.name.endswith("(contrib)")}
print("STATES " + json.dumps(states), flush=True)
import fakelib_a
print("LINES " + json.dumps(lines), flush=True)
platform_otel.shutdown()
"""


def _run(
    run_python: RunPython, site: Path, kwargs: dict[str, object] | None = None, **env: str
) -> tuple[str, dict[str, list[object]], list[list[str]]]:
    env = {
        "PYTHONPATH": str(site),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    result = run_python(APP, env, args=[json.dumps(kwargs or {})])
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    out = result.stdout
    states = json.loads(next(x for x in out.splitlines() if x.startswith("STATES "))[7:])
    lines = json.loads(next(x for x in out.splitlines() if x.startswith("LINES "))[6:])
    return out, states, lines


def _instrumented(out: str) -> dict[str, dict[str, object]]:
    found = {}
    for line in out.splitlines():
        if line.startswith("INSTRUMENTED "):
            item = json.loads(line[len("INSTRUMENTED ") :])
            found[item["name"]] = item
    return found


def test_installed_instrumentations_are_enabled_with_init_providers(
    run_python: RunPython, site: Path
) -> None:
    """Each usable instrumentor gets init()'s SDK providers; one not yet imported waits for the import."""
    out, states, _lines = _run(run_python, site)
    done = _instrumented(out)
    assert set(done) == {"fakea", "fakec"}, out
    for item in done.values():
        assert item["tracer_provider"] is True and item["meter_provider"] is True
    # fakelib_c was imported before init(): enabled during init()
    assert out.index('INSTRUMENTED {"name": "fakec"') < out.index("INIT_DONE")
    assert states["fakec (contrib)"] == [True, "active"]
    # fakelib_a was not: init() does not import it, the app's import enables it
    assert "IMPORTED fakelib_a" not in out[: out.index("INIT_DONE")]
    assert states["fakea (contrib)"] == [True, "waiting for import of 'fakelib_a'"]
    assert out.index("IMPORTED fakelib_a") < out.index('INSTRUMENTED {"name": "fakea"')
    assert done["fakea"]["library_imported"] is True
    # shutdown() undoes them
    assert "UNINSTRUMENTED fakea" in out and "UNINSTRUMENTED fakec" in out


def test_missing_unsupported_and_failing_ones_give_one_line_each_and_never_raise(
    run_python: RunPython, site: Path
) -> None:
    _out, states, lines = _run(run_python, site)
    assert states["fakemissing (contrib)"][0] is False
    assert "fake-lib-missing" in str(states["fakemissing (contrib)"][1])
    assert states["fakeold (contrib)"][0] is False
    assert "Fake-Lib-A 2.0" in str(states["fakeold (contrib)"][1])  # the version found
    assert states["fakeboom (contrib)"][0] is False
    assert "boom" in str(states["fakeboom (contrib)"][1])
    for name, level in (("fakemissing", "INFO"), ("fakeold", "INFO"), ("fakeboom", "WARNING")):
        mine = [line for line in lines if f" {name} instrumentation" in line[1]]
        assert len(mine) == 1 and mine[0][0] == level, lines
    # the application's own integrations take precedence over their entry points
    assert "fastapi (contrib)" in states and states["fastapi (contrib)"][0] is False
    assert "covered by platform-otel's own" in str(states["fastapi (contrib)"][1])


@pytest.mark.parametrize(
    ("kwargs", "env"),
    [
        ({}, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "fakea, fakec"}),
        ({"disable": ["fakea", "fakec"]}, {}),
        ({}, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}),
    ],
    ids=["env", "init-disable", "wildcard"],
)
def test_disabled_instrumentations_are_not_enabled(
    run_python: RunPython, site: Path, kwargs: dict[str, object], env: dict[str, str]
) -> None:
    out, states, lines = _run(run_python, site, kwargs, **env)
    done = _instrumented(out)
    assert "fakea" not in done and "fakec" not in done, out
    assert states["fakea (contrib)"] == [False, "disabled by configuration"]
    assert not [line for line in lines if "fakea" in line[1]]  # disabling is not worth a log line


@pytest.mark.parametrize("first", ["httpx", "httpx2"])
def test_an_instrumentation_module_that_imports_two_hooked_libraries(
    run_python: RunPython, first: str
) -> None:
    """opentelemetry-instrumentation-httpx imports httpx and httpx2 at its top; each has an
    integration waiting for its import (platform-otel's own httpx, the httpx2 entry point).
    Whichever the application imports first, both end up instrumented, without an error."""
    import importlib.util

    if importlib.util.find_spec("httpx2") is None or importlib.util.find_spec("httpx") is None:
        pytest.skip("needs httpx and httpx2 (mcp 2.x installs httpx2)")
    code = f"""
import platform_otel
platform_otel.init()
import {first}
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
print("HTTPX", HTTPXClientInstrumentor().is_instrumented_by_opentelemetry)
print("HTTPX2", HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry)
"""
    env = {f"OTEL_{s}_EXPORTER": "none" for s in ("TRACES", "METRICS", "LOGS")}
    result = run_python(code, env)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    ours = [
        line
        for line in result.stderr.splitlines()
        if "platform-otel" in line and "gpu integration disabled" not in line  # no driver here
    ]
    assert not ours, str(result)
    assert "HTTPX True" in result.stdout and "HTTPX2 True" in result.stdout, str(result)


def test_an_entry_point_whose_own_library_is_absent_is_not_loaded(
    run_python: RunPython, tmp_path: Path
) -> None:
    """One package, two instrumentors for two libraries (as httpx/httpx2): with only one library
    installed, the other entry point is skipped from metadata, its module never imported."""
    site = tmp_path / "site"
    site.mkdir()
    _library(site, "fake-lib-one", "fakelib_one", "1.0")
    (site / "fake_instr_pair.py").write_text(
        "print('LOADED fake_instr_pair', flush=True)\n"
        + INSTRUMENTOR.format(
            deps=("fake-lib-one >= 1",), body="pass", name="one", library="fakelib_one"
        )
        + "\nclass Two(Instrumentor):\n    def instrumentation_dependencies(self):\n"
        "        return ('fake-lib-two >= 1',)\n"
    )
    _dist(
        site,
        "fake_instrumentation_pair",
        "0.1",
        requires=[
            "fake-lib-one >= 1; extra == 'instruments-any'",
            "fake-lib-two >= 1; extra == 'instruments-any'",
        ],
        entry="fake_lib_one = fake_instr_pair:Instrumentor\nfake_lib_two = fake_instr_pair:Two",
        top="fake_instr_pair",
    )
    code = """
import json, sys
import platform_otel
t = platform_otel.init()
print("AT_INIT", "fake_instr_pair" in sys.modules, flush=True)
print("STATES " + json.dumps({i.name: [i.active, i.reason] for i in t.integrations if "fake" in i.name}))
import fakelib_one
"""
    env = {
        "PYTHONPATH": str(site),
        **{f"OTEL_{s}_EXPORTER": "none" for s in ("TRACES", "METRICS", "LOGS")},
    }
    result = run_python(code, env)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    assert "AT_INIT False" in result.stdout, str(result)
    states = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("STATES "))[7:])
    assert states["fake_lib_two (contrib)"] == [False, "needs fake-lib-two>=1, not installed"]
    assert states["fake_lib_one (contrib)"] == [True, "waiting for import of 'fakelib_one'"]
    assert '"name": "one"' in result.stdout  # enabled when the application imported fakelib_one
