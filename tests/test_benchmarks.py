"""The benchmark harness's own plumbing: discovery contract, table rendering, profile summary."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

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


def _start_tiny_server(*args: str):  # type: ignore[no-untyped-def]
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "_tiny_server.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/"


def test_open_loop_generator_counts_latency_from_the_scheduled_time(tmp_path: Path) -> None:
    """The server blocks its loop for 200 ms once. Requests scheduled in the stall's first 50 ms
    must show >= 150 ms: they were due then, whatever the generator could send. With 16
    connections the stall also exhausts the pool, so requests queue in the generator (late)
    and still count their wait. A closed-loop generator against the same stall sees only its
    few in-flight requests delayed, and its p99 stays low: the stall is hidden."""
    import json
    import subprocess

    rate, stall_ms = 400, 200.0
    server, url = _start_tiny_server("--stall-after", "200", "--stall-ms", str(stall_ms))
    try:
        dump = tmp_path / "latencies.txt"
        extra = ["--drain", "1", "--latencies", str(dump)]
        out = subprocess.run(
            [sys.executable, str(BENCH / "_openloop.py"), url, "1.5", str(rate), "16", *extra],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        server.terminate()
        stall_line = server.communicate(timeout=10)[0].strip().splitlines()[-1]
    finally:
        server.kill()
        server.wait()
    result = json.loads(out)
    assert result["requests"] == 600 and result["answered"] == 600, result
    assert result["errors"] == 0 and result["unfinished"] == 0, result
    assert abs(result["rate"] - rate) < 0.05 * rate, result
    assert result["late"] > 0, "16 connections cannot carry 80 requests due in a 200 ms stall"

    assert stall_line.startswith("STALL "), stall_line
    stall_start, stall_end = (float(x) for x in stall_line.split()[1:3])
    samples = [tuple(map(float, line.split()[:2])) for line in dump.read_text().splitlines()]
    assert len(samples) == 600
    early = [lat for sched, lat in samples if stall_start <= sched <= stall_end - 0.150]
    assert len(early) >= 15, (len(early), stall_start, stall_end)  # ~20 due in those 50 ms
    assert min(early) >= 149.0, sorted(early)[:5]
    assert result["p99_ms"] >= 100.0, result  # ~80 of 600 requests fall into the stall

    closed, url = _start_tiny_server("--stall-after", "200", "--stall-ms", str(stall_ms))
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH / "_loadgen.py"), url, "1.5", "4"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    finally:
        closed.kill()
        closed.wait()
    closed_p99 = float(out.split()[1])
    assert closed_p99 < 100.0, out  # the closed loop hides the same stall


def test_fastapi_scenario_reports_open_loop_p99_at_one_rate_for_every_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench_fastapi, quick, two cases: after the throughput runs each case gets an open-loop
    row at the same fixed rate (half the uninstrumented throughput), with its p99 compared to
    the uninstrumented p99 and the init() target checked on that ratio."""
    monkeypatch.setenv("BENCH_OPENLOOP_SECONDS", "1")
    monkeypatch.setenv("BENCH_OPENLOOP_FRACTION", "0.5")
    bench = _import("bench_fastapi")
    rows = bench.run(True, ("none", "platform"))
    throughput = [r for r in rows if r["benchmark"].startswith("fastapi hello-world")]
    open_rows = [r for r in rows if r["benchmark"].startswith("fastapi open-loop p99")]
    assert [r["case"] for r in throughput] == ["uninstrumented", "platform_otel.init()"]
    assert [r["case"] for r in open_rows] == ["uninstrumented", "platform_otel.init()"]
    base, ours = open_rows
    rate = base["openloop_rate"]
    assert rate == ours["openloop_rate"] == round(0.5 * throughput[0]["value"])
    assert (
        base["benchmark"]
        == ours["benchmark"]
        == f"fastapi open-loop p99 at {rate:.0f} req/s (access log on)"
    )
    for r in open_rows:
        assert r["unit"] == "ms" and r["higher_is_better"] is False
        assert r["value"] > 0 and r["openloop_p99_ms"] and r["openloop_answered_rate"][0] > 0
        assert r["openloop_errors"] == [0], r
        assert "answered" in r["notes"] and "open loop" in r["notes"]
    assert base["ratio"] == 1.0 and base["ok"] is None
    assert ours["ratio"] == pytest.approx(ours["value"] / base["value"], rel=1e-3)
    assert ours["target"] == "<= 2x uninstrumented"
    assert ours["ok"] == (ours["ratio"] <= 2.0)


def test_open_loop_counts_unanswered_requests_with_the_time_they_waited() -> None:
    """A server that stops answering must not look fast: requests still unanswered after the
    drain enter the percentiles with the wait they had so far, and are reported."""
    import json
    import subprocess

    server, url = _start_tiny_server("--stall-after", "50", "--stall-ms", "5000")
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH / "_openloop.py"), url, "1", "200", "32", "--drain", "0.5"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    finally:
        server.kill()
        server.wait()
    result = json.loads(out)
    assert result["answered"] < 50 and result["unfinished"] >= 150, result
    assert result["p50_ms"] >= 500.0 and result["p99_ms"] >= 1000.0, result


def test_instructions_help_prints_usage_and_runs_nothing() -> None:
    """``--help`` used to be ignored and started the default valgrind runs (minutes)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "instructions.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: ``python benchmarks/instructions.py" in done.stdout
