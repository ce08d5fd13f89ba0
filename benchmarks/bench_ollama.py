"""Cost of the Ollama integration on a 50 ms streamed chat call (target: below 2 %).

The simulated Ollama (``platform_otel._ollama_sim``, its own process) answers each
streamed chat in 50 ms with 10 or 20 chunks (200 or 400 tokens/s) and Ollama's
timing fields. Two client
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


def _case(chunks: int, rounds: int, calls: int) -> dict[str, Any]:
    """Medians of one chunk count: wall, calling-thread and process CPU per call, per mode."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = [
        PYTHON, "-m", "platform_otel._ollama_sim", "--port", str(port),
        "--latency", str(CALL_S), "--chunks", str(chunks), "--load", "0",
    ]  # fmt: skip
    client = [PYTHON, str(BENCH_DIR / "apps" / "ollama_client.py"), url]
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    thread: dict[str, list[float]] = {m: [] for m in MODES}
    with sink() as s, _process(server, bench_env(), "simulated Ollama"):
        env = bench_env(**otlp_env(s.endpoint))
        with contextlib.ExitStack() as stack:
            procs = [(m, stack.enter_context(_process([*client, m], env, "READY"))) for m in MODES]
            for i in range(rounds):
                for mode, proc in procs[i % 3 :] + procs[: i % 3]:  # rotate the order
                    result = _round(proc, calls)
                    walls[mode].extend(result["walls"])
                    cpu[mode].append(result["cpu"] / calls)
                    thread[mode].append(result["thread"] / calls)
        received = s.counts()
    return {
        "wall": {m: median(walls[m]) * 1e3 for m in MODES},
        "process": {m: median(cpu[m]) * 1e3 for m in MODES},
        "thread": {m: median(thread[m]) * 1e3 for m in MODES},
        "span_requests": received.get("traces", {}).get("requests", 0),
    }


MODES = ("none", "platform-quiet", "platform")
#: chunks per 50 ms call: 10 (200 tokens/s, a small model on a GPU) and 20 (400 tokens/s)
CHUNK_CASES = (10, 20)


def run(quick: bool) -> list[dict[str, Any]]:
    rounds, calls = (3, 20) if quick else (8, 40)
    rows: list[dict[str, Any]] = []
    for chunks in CHUNK_CASES:
        r = _case(chunks, rounds, calls)
        wall, on_path, process = r["wall"], r["thread"], r["process"]
        added = on_path["platform-quiet"] - on_path["none"]
        pct = 100.0 * added / (CALL_S * 1e3)
        case = f"50 ms stream, {chunks} chunks"
        notes = f"{rounds} rotating rounds x {calls} calls"
        rows += [
            row("ollama", f"{case}: wall, uninstrumented", wall["none"], "ms",
                higher_is_better=False, notes=f"median per call; {notes}"),
            row("ollama", f"{case}: wall, platform_otel.init()", wall["platform-quiet"], "ms",
                baseline=wall["none"], higher_is_better=False, notes="median per call"),
            row("ollama", f"{case}: calling-thread CPU, uninstrumented", on_path["none"], "ms",
                higher_is_better=False, notes="ollama + httpx reading the NDJSON stream"),
            row("ollama", f"{case}: calling-thread CPU, platform_otel.init()",
                on_path["platform-quiet"], "ms", baseline=on_path["none"],
                higher_is_better=False,
                notes=f"span, {chunks + 6} measurements (one per chunk after the first), "
                "span encoding"),
            row("ollama", f"{case}: overhead on the call (added CPU / 50 ms)", pct, "%",
                higher_is_better=False, target="< 2 %", ok=pct < 2.0,
                notes=f"{added * 1e3:.0f} µs per call"),
            row("ollama", f"{case}: process CPU (all threads), platform_otel.init()",
                process["platform-quiet"], "ms", baseline=process["none"],
                higher_is_better=False,
                notes=f"+{(process['platform-quiet'] - process['none']) * 1e3:.0f} µs with "
                f"background export; {r['span_requests']} span export requests received"),
            row("ollama", f"{case}: process CPU, init() default log level",
                process["platform"], "ms", baseline=process["none"], higher_is_better=False,
                notes=f"+{(process['platform'] - process['none']) * 1e3:.0f} µs: also prints "
                "and exports httpx's own INFO line per request (logging integration)"),
        ]  # fmt: skip
    return rows
