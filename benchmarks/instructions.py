"""Instructions per request, counted by valgrind: a deterministic measure for A/B work.

Throughput on a shared 2-vCPU VM moves by 10-15 % between runs, which hides
changes of a few microseconds. Valgrind's ``callgrind`` counts the machine
instructions the process executes (all threads), and that count changes by
well under 1 % between runs. This script runs ``_asgi_loop.py`` (the in-process
FastAPI loop, access log on) under callgrind twice per mode, with 1,000 and 3,000
measured requests, and reports the difference divided by 2,000: start-up, imports
and warm-up cancel out.

Instructions are not time: a memory-bound instruction costs more than an
arithmetic one, and the telemetry's instructions cost a real worker about three
times what the same count costs on average (docs/performance.md). Use it to
compare two versions of the same code, not to predict throughput.

Usage: ``python benchmarks/instructions.py [MODE[+VAR=VALUE;...]] ...``
(default: ``none platform``; needs ``valgrind``). Example:
``python benchmarks/instructions.py none platform "platform+PLATFORM_OTEL_OTLP_ENCODER=python"``.
Each mode takes about a minute.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from _common import BENCH_DIR, PYTHON, bench_env, otlp_env, sink

__all__ = ["instructions_per_request", "main"]

_REFS = re.compile(r"refs:\s+([\d,]+)")


def _count(mode: str, extra: str, n: int, endpoint: str) -> int:
    env = bench_env(BENCH_MODE=mode, BENCH_ACCESS_LOG="1", **otlp_env(endpoint))
    if extra:
        env["BENCH_ENV"] = extra
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    out = subprocess.run(
        [*cmd, PYTHON, str(BENCH_DIR / "_asgi_loop.py"), str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    match = _REFS.search(out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def instructions_per_request(spec: str, endpoint: str) -> float:
    """Instructions per request for ``MODE[+VAR=VALUE;...]`` (two valgrind runs in parallel)."""
    mode, _, extra = spec.partition("+")
    with ThreadPoolExecutor(2) as pool:
        short, long = pool.map(lambda n: _count(mode, extra, n, endpoint), (1000, 3000))
    return (long - short) / 2000


def main(argv: list[str]) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    specs = argv or ["none", "platform"]
    with sink() as s:
        results = [(spec, instructions_per_request(spec, s.endpoint)) for spec in specs]
    base = results[0][1]
    for spec, value in results:
        print(f"{spec:60s} {value:10,.0f} instructions/request  ({value - base:+,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
