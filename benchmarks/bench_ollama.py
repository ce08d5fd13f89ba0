"""Cost of the Ollama integration on a 50 ms streamed chat call (target: below 2 %).

The simulated Ollama (``platform_otel._ollama_sim``, its own process) answers each
streamed chat in 50 ms with 20 chunks and Ollama's timing fields. Two client
processes (``apps/ollama_client.py``) make the same calls, one bare and one after
``platform_otel.init()`` (OTLP to a sink, the ollama integration on: span,
duration/token/chunk histograms, Ollama timings, /api/ps polling), in alternating
rounds. The overhead is the extra CPU time of the calling thread per call (the
work the instrumentation adds on the call's path: span, measurements, the span's
encoding at its end) over the 50 ms the call takes; unlike wall time it is not
buried in the scheduling jitter of a shared machine. The extra CPU of the whole
process (background export included) and the wall-time medians are reported too.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from _common import BENCH_DIR, PYTHON, bench_env, free_port, median, otlp_env, row, sink

__all__ = ["run"]

CALL_S = 0.05
CHUNKS = 20


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], ready: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the instrumented clients' console logs
        text=True,
        bufsize=1,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if ready not in line:
            raise RuntimeError(f"{cmd[:3]} did not start: {line!r}")
        yield proc
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _round(proc: subprocess.Popen[str], n: int) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"ROUND {n}\n")
    proc.stdin.flush()
    return dict(json.loads(proc.stdout.readline()))


def run(quick: bool) -> list[dict[str, Any]]:
    rounds, calls = (3, 20) if quick else (8, 40)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = [
        PYTHON, "-m", "platform_otel._ollama_sim", "--port", str(port),
        "--latency", str(CALL_S), "--chunks", str(CHUNKS), "--load", "0",
    ]  # fmt: skip
    client = [PYTHON, str(BENCH_DIR / "apps" / "ollama_client.py"), url]
    modes = ("none", "platform-quiet", "platform")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    thread: dict[str, list[float]] = {m: [] for m in modes}
    with sink() as s, _process(server, bench_env(), "simulated Ollama"):
        env = bench_env(**otlp_env(s.endpoint))
        with contextlib.ExitStack() as stack:
            procs = [(m, stack.enter_context(_process([*client, m], env, "READY"))) for m in modes]
            for i in range(rounds):
                for mode, proc in procs[i % 3 :] + procs[: i % 3]:  # rotate the order
                    result = _round(proc, calls)
                    walls[mode].extend(result["walls"])
                    cpu[mode].append(result["cpu"] / calls)
                    thread[mode].append(result["thread"] / calls)
        received = s.counts()
    wall = {m: median(walls[m]) * 1e3 for m in modes}
    per_call = {m: median(cpu[m]) * 1e3 for m in modes}
    on_path = {m: median(thread[m]) * 1e3 for m in modes}
    added = on_path["platform-quiet"] - on_path["none"]
    added_process = per_call["platform-quiet"] - per_call["none"]
    added_default = per_call["platform"] - per_call["none"]
    pct = 100.0 * added / (CALL_S * 1e3)
    notes = f"{rounds} rotating rounds x {calls} calls, {CHUNKS} chunks per call"
    spans = received.get("traces", {}).get("requests", 0)
    return [
        row("ollama", "streamed chat (50 ms), uninstrumented: wall", wall["none"], "ms",
            higher_is_better=False, notes=f"median per call; {notes}"),
        row("ollama", "streamed chat (50 ms), platform_otel.init(): wall",
            wall["platform-quiet"], "ms", baseline=wall["none"], higher_is_better=False,
            notes="median per call"),
        row("ollama", "calling-thread CPU per call, uninstrumented", on_path["none"], "ms",
            higher_is_better=False, notes="ollama + httpx parsing 21 NDJSON chunks"),
        row("ollama", "calling-thread CPU per call, platform_otel.init()",
            on_path["platform-quiet"], "ms", baseline=on_path["none"], higher_is_better=False,
            notes="span, 27 measurements (one per chunk for time per chunk), span encoding"),
        row("ollama", "overhead on the call: added calling-thread CPU / 50 ms", pct, "%",
            higher_is_better=False, target="< 2 %", ok=pct < 2.0,
            notes=f"{added * 1e3:.0f} µs per call"),
        row("ollama", "process CPU per call (all threads), platform_otel.init()",
            per_call["platform-quiet"], "ms", baseline=per_call["none"], higher_is_better=False,
            notes=f"+{added_process * 1e3:.0f} µs with background export; "
            f"{spans} span export requests received"),
        row("ollama", "process CPU per call, init() default log level", per_call["platform"],
            "ms", baseline=per_call["none"], higher_is_better=False,
            notes=f"+{added_default * 1e3:.0f} µs: also prints and exports httpx's own "
            "INFO line per request (logging integration)"),
    ]  # fmt: skip
