"""The benchmark harness's own plumbing: discovery contract, table rendering, profile summary."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import(name: str):  # type: ignore[no-untyped-def]
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_every_bench_module_exposes_run_quick() -> None:
    """Each benchmarks/bench_*.py has run(quick) so `python benchmarks/run.py` picks it up."""
    import inspect

    modules = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    assert {"bench_fastapi", "bench_startup", "bench_collector_down"} <= set(modules)
    for name in modules:
        params = list(inspect.signature(_import(name).run).parameters.values())
        assert params[0].name == "quick", name
        assert all(p.default is not p.empty for p in params[1:]), name


def test_table_shows_ratio_target_and_failed_targets() -> None:
    """The results table renders same-run ratios and marks a missed target."""
    common, runner = _import("_common"), _import("run")
    rows = [
        common.row("b", "base", 100.0, "req/s", baseline=100.0),
        common.row("b", "ours", 80.0, "req/s", baseline=100.0, target=">= 0.85x", ok=False),
    ]
    table = runner.render(rows).splitlines()
    assert len(table) == 4
    assert "| b | ours | 80 req/s | 0.80x | >= 0.85x | **no** |" in table[3]


def test_profile_summary_groups_self_time_and_skips_idle_threads() -> None:
    """py-spy collapsed stacks become a component table; parked threads are not counted as CPU."""
    prof = _import("profile_fastapi")
    raw = "\n".join(
        [
            "proc;run (asyncio/base_events.py:1);start_span (opentelemetry/sdk/trace/__init__.py:9) 30",
            "proc;run (asyncio/base_events.py:1);app (starlette/routing.py:5) 70",
            "proc;worker (threading.py:1);wait (threading.py:2) 500",
        ]
    )
    out = prof.summarize(raw)
    assert "CPU samples: 100 (idle thread samples left out: 500)" in out
    assert "| sdk trace (span create/end, processors) | 30.0% |" in out
    assert "| fastapi + starlette (app) | 70.0% |" in out


def test_sink_answers_a_count_request_sent_as_soon_as_it_started() -> None:
    """The OTLP sink installs its SIGUSR1 handler before announcing its port. Before, a count
    asked for at once could arrive first and kill it (the signal's default action), and a whole
    FastAPI run was then measured with every export failing. Busy CPUs make the sink lose the
    race often (10 of 30 starts died with the old order)."""
    import subprocess

    common = _import("_common")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        for _ in range(15):
            with common.sink() as s:
                counts = s.counts()
                assert counts.get("traces") == {"requests": 0, "bytes": 0}, counts
                assert s.proc.poll() is None
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_uvicorn_standard_scenario_runs_the_worker_on_httptools_and_uvloop() -> None:
    """The `uvicorn[standard]` rows measure what they claim: the worker started with the
    installed packages has httptools and uvloop loaded, and the project's own environment
    still has neither (the test suite's servers keep h11 and asyncio)."""
    import importlib.util
    import urllib.request

    common = _import("_common")
    deps = common.standard_server_deps()
    assert deps is not None, "pip could not install httptools and uvloop"
    assert importlib.util.find_spec("httptools") is None
    assert importlib.util.find_spec("uvloop") is None
    with common.server("none", "http://127.0.0.1:9", extra_path=deps) as srv:
        with urllib.request.urlopen(srv.url, timeout=10) as response:
            assert response.status == 200
        maps = Path(f"/proc/{srv.proc.pid}/maps").read_text()
    assert "httptools" in maps and "uvloop" in maps
