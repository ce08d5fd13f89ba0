"""No side effect at import; one at-fork hook, registered by ``init()``, resets each module's state.

Both run in a fresh interpreter: ``os.register_at_fork`` cannot be undone, and
the fork must be a real one.
"""

from __future__ import annotations

import sys

import pytest

from tests.support.fixtures import run_python

IMPORT_APP = """
import os, threading
calls = []
real = os.register_at_fork
def recording(**hooks):
    calls.append(sorted(f"{k}={getattr(v, '__module__', '?')}.{getattr(v, '__qualname__', '?')}" for k, v in hooks.items()))
    return real(**hooks)
os.register_at_fork = recording

import platform_otel
import platform_otel._telemetry, platform_otel._pipeline, platform_otel._exporters
import platform_otel.instrumentation, platform_otel.testing
ours = [c for c in calls if any("platform_otel" in h for h in c)]
print("IMPORT_HOOKS", ours)
print("IMPORT_THREADS", [t.name for t in threading.enumerate()])

tel = platform_otel.init(
    service_name="svc",
    exporters={"traces": ["console"], "metrics": ["console"], "logs": ["none"]},
    log_console="never",
)
platform_otel.init()  # a second call adds nothing
ours = [c for c in calls if any("platform_otel" in h for h in c)]
print("INIT_HOOKS", len(ours), ours)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "register_at_fork"), reason="no fork")
def test_import_registers_no_fork_hook_and_starts_no_thread_init_registers_one() -> None:
    result = run_python(IMPORT_APP, timeout=30)
    assert result.rc == 0, str(result)
    assert "IMPORT_HOOKS []" in result.stdout, str(result)
    assert "IMPORT_THREADS ['MainThread']" in result.stdout, str(result)
    assert "INIT_HOOKS 1 " in result.stdout, str(result)
    line = next(x for x in result.stdout.splitlines() if x.startswith("INIT_HOOKS"))
    assert "after_in_child=platform_otel._telemetry._after_fork_in_child" in line, line


FORK_APP = """
import os, sys, threading, time, types
import platform_otel
from platform_otel import _exporters, _fast, _pipeline, _telemetry
from platform_otel._fast import queue as fast_queue

# The fast path's reset, observed: it runs after the exporters' and before the identity's.
seen = {}
original = _fast.after_fork_in_child
def after_fork_in_child():
    tel = platform_otel.get_telemetry()
    seen["gate_reset_before_fast"] = _exporters._gate._forking is False
    seen["identity_not_yet_reset"] = tel.resource.attributes["process.pid"] != os.getpid()
    original()
_fast.after_fork_in_child = after_fork_in_child

tel = platform_otel.init(
    service_name="svc",
    exporters={"traces": ["console"], "metrics": ["none"], "logs": ["none"]},
    log_console="never",
)
fast_queue._track_pid()
parent_instance = tel.resource.attributes["service.instance.id"]

# A thread holds the pipeline registry lock while the main thread forks.
held, release = threading.Event(), threading.Event()
def hold():
    with _pipeline._registry_lock:
        held.set()
        release.wait(5)
threading.Thread(target=hold, daemon=True).start()
held.wait(5)

pid = os.fork()
if pid == 0:
    ok = {
        "fast_pid": fast_queue._Pid.value == os.getpid(),
        "exporters_build_lock_free": not _exporters._build_lock.locked(),
        "exporters_gate_open": _exporters._gate._forking is False,
        "pipeline_lock_usable": _pipeline._registry_lock.acquire(timeout=1),
        "fast_called_in_order": seen.get("gate_reset_before_fast") is True
        and seen.get("identity_not_yet_reset") is True,
        "new_instance_id": tel.resource.attributes["service.instance.id"] != parent_instance,
        "provider_pid": tel.tracer_provider.resource.attributes["process.pid"] == os.getpid(),
    }
    print("CHILD", ok, flush=True)
    os._exit(0 if all(ok.values()) else 1)
release.set()
_, status = os.waitpid(pid, 0)
print("PARENT_GATE_OPEN", _exporters._gate._forking is False, "BUILD_LOCK_FREE", not _exporters._build_lock.locked())
print("CHILD_STATUS", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork")
def test_after_fork_each_module_state_is_reset_in_the_child_in_a_fixed_order() -> None:
    result = run_python(FORK_APP, timeout=30)
    assert result.rc == 0, str(result)
    assert "CHILD_STATUS 0" in result.stdout, str(result)
    assert "PARENT_GATE_OPEN True BUILD_LOCK_FREE True" in result.stdout, str(result)
