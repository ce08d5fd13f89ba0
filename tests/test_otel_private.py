"""Private OpenTelemetry names: all listed in one module, checked at init(), never fatal.

* Every listed name, made to look missing in turn, turns the fast path off with one
  warning naming it, and request spans still arrive (the SDK path).
* Two SDK changes of the kind a release makes (a private field renamed, the SDK's own
  code adjusted) in a real process: request spans still reach a real OTLP receiver.
* No module outside ``platform_otel._fast`` and ``_otel_private`` reads a listed name,
  and every private name ``_fast`` reads on an SDK object is listed.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from platform_otel import _fast, _otel_private
from platform_otel._config import load_settings
from platform_otel.instrumentation import InstrumentationContext
from platform_otel.instrumentation import fastapi as pf
from tests.support.fixtures import otel_env, requires_fast_path, run_python
from tests.support.otlp_receiver import OtlpReceiver

SRC = Path(__file__).resolve().parents[1] / "src" / "platform_otel"


@pytest.fixture(autouse=True)
def _fresh_check() -> object:
    _otel_private.forget()
    yield
    _otel_private.forget()
    pf.uninstrument()


def test_every_name_holds_on_the_installed_sdk() -> None:
    """On the newest SDK every listed name is found (the fast path is on); at the lowest declared
    versions some are missing, and the fast path is off with the reason (docs/versions.md)."""
    if os.environ.get("PLATFORM_OTEL_LOWEST"):
        assert _otel_private.check() != []
        assert not _fast.enable() and "SDK differs" in (_fast.why_not() or "")
        return
    assert _otel_private.check() == []
    assert _fast.enable() and _fast.why_not() is None


CHECKED = [r for r in _otel_private.REQUIREMENTS if r.kind != "helper"]


@requires_fast_path
@pytest.mark.parametrize("req", CHECKED, ids=lambda r: r.name)
def test_a_moved_name_turns_the_fast_path_off_and_spans_still_arrive(
    req: _otel_private.Requirement,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With one listed name missing, init()'s check turns the fast path off (one warning naming it) and the request span is still exported."""
    moved = dataclasses.replace(
        req,
        attr=f"{req.attr}_moved" if req.attr else "",
        probe=req.probe if req.attr or req.kind != "module" else f"{req.probe}_moved",
    )
    listed = tuple(moved if r is req else r for r in _otel_private.REQUIREMENTS)
    monkeypatch.setattr(_otel_private, "REQUIREMENTS", listed)
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        assert _fast.enable() is False
    warnings = [r.getMessage() for r in caplog.records if "fast path off" in r.getMessage()]
    assert len(warnings) == 1 and moved.name in warnings[0]
    assert moved.name in (_fast.why_not() or "")
    assert "SDK path" in _fast.describe()

    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    pf.instrument(InstrumentationContext(load_settings(env={}), provider, meters, None))
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    with TestClient(app) as client:
        assert client.get("/items/5").json() == {"item_id": 5}
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["GET /items/{item_id}"]
    assert type(spans[0]).__name__ != "LeanSpan"  # the SDK's own span


def test_helpers_do_nothing_where_their_names_are_missing() -> None:
    """The helpers outside the fast path degrade to a no-op on objects without their private names."""
    bare = object()
    _otel_private.cap_exporter_timeout(bare, 1.0)
    assert _otel_private.instrumented_by_official(bare) is False
    assert _otel_private.has_span_processors(bare) is False
    assert _otel_private.update_provider_resource(bare, None) is False
    assert _otel_private.reset_metric_state(bare) is False
    assert _otel_private.set_resource_attributes(bare, {}) is False


# A real process, an SDK whose private field moved (its own code adjusted, as a release
# would), a real receiver: request spans arrive either way.
MOVED_SDK_APP = """
import os
from opentelemetry.sdk import trace as sdk_trace

Tracer = sdk_trace.Tracer
original_init, original_start = Tracer.__init__, Tracer.start_span

def init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.{new} = self.__dict__.pop("{old}")

Tracer.__init__ = init
{adjust}

import platform_otel
platform_otel.init(service_name="moved-sdk")
from fastapi import FastAPI
from fastapi.testclient import TestClient
from platform_otel import _fast

app = FastAPI()

@app.get("/pid")
def pid():
    return {{"pid": os.getpid()}}

with TestClient(app) as client:
    for _ in range(3):
        assert client.get("/pid").status_code == 200
print("FAST=" + str(_fast.active()))
platform_otel.shutdown()
"""

ADJUST_SPAN_LIMITS = """
def start_span(self, *args, **kwargs):  # the SDK reads its limits under the new name
    self._span_limits = self.limits_v2
    try:
        return original_start(self, *args, **kwargs)
    finally:
        del self._span_limits
Tracer.start_span = start_span
"""

ADJUST_TRACER_CONFIG = """
Tracer._is_enabled = lambda self: self.config_v2.is_enabled
def set_config(self, config):
    self.config_v2 = config
Tracer._set_tracer_config = set_config
"""


@pytest.mark.integration
@requires_fast_path
@pytest.mark.parametrize(
    ("old", "new", "adjust", "fast"),
    [
        ("_span_limits", "limits_v2", ADJUST_SPAN_LIMITS, "False"),
        ("_tracer_config", "config_v2", ADJUST_TRACER_CONFIG, "True"),
    ],
    ids=["Tracer._span_limits", "Tracer._tracer_config"],
)
def test_an_sdk_with_a_moved_field_still_exports_request_spans(
    old: str, new: str, adjust: str, fast: str, otlp_grpc_receiver: OtlpReceiver
) -> None:
    """A renamed private SDK field never costs request spans: the check turns the fast path off where it reads that field."""
    script = MOVED_SDK_APP.format(old=old, new=new, adjust=adjust)
    result = run_python(script, otel_env(otlp_grpc_receiver, service_name="moved-sdk"), timeout=60)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    assert f"FAST={fast}" in result.stdout, str(result)
    if fast == "False":
        assert "fast path off" in result.stderr and f"Tracer.{old}" in result.stderr
    otlp_grpc_receiver.wait_for(lambda r: sum(s.name == "GET /pid" for s in r.spans()) == 3, 10)


# -- the source keeps the rule ---------------------------------------------------------

_OURS = {"self", "cls"}


def _private_attributes(path: Path) -> set[str]:
    """``x._name`` attribute names read or written on anything but self/cls."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in _OURS)
        ):
            names.add(node.attr)
    return names


def _defined_here(paths: list[Path]) -> set[str]:
    """Private names our own classes and modules define (self._x = ..., def _x, _x = ...)."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in _OURS:
                    names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


LISTED = {r.attr for r in _otel_private.REQUIREMENTS if r.attr}


def test_no_listed_name_is_read_outside_the_fast_path() -> None:
    """Outside _fast/ and _otel_private.py, no module touches a listed private SDK name."""
    offenders = {}
    for path in SRC.rglob("*.py"):
        if path.name == "_otel_private.py" or "_fast" in path.parts:
            continue
        found = (_private_attributes(path) & LISTED) - _defined_here([path])
        if found:
            offenders[str(path.relative_to(SRC))] = sorted(found)
    assert offenders == {}


def test_every_private_sdk_name_the_fast_path_reads_is_listed() -> None:
    """Each private attribute _fast/ uses on an object it does not define is in REQUIREMENTS."""
    fast = sorted((SRC / "_fast").glob("*.py"))
    ours = _defined_here([*fast, *SRC.rglob("*.py")])
    used: set[str] = set()
    for path in fast:
        used |= _private_attributes(path)
    assert sorted(used - ours - LISTED) == []
