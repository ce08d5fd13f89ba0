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

``--server`` counts in a real uvicorn worker instead: the worker runs under
callgrind, wrk loads it (15 s of warm-up, then 25 s with the counters zeroed at the
start and dumped at the end), and the count is divided by the requests wrk
completed. This includes the HTTP server's own work (uvicorn with ``h11``), so
the telemetry's share of a worker's instructions can be compared with its share
of a worker's time (docs/performance.md). ``--no-access-log`` drops the access log.

Usage: ``python benchmarks/instructions.py [--server [--no-access-log]] [MODE[+VAR=VALUE;...]] ...``
(default: ``none platform``; needs ``valgrind``). Example:
``python benchmarks/instructions.py none platform "platform+PLATFORM_OTEL_OTLP_ENCODER=python"``.
Each mode takes about a minute.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import BENCH_DIR, PYTHON, bench_env, load, otlp_env, server, sink

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


def server_instructions_per_request(spec: str, endpoint: str, access_log: bool = True) -> float:
    """Instructions per request of a uvicorn worker under wrk load (all its threads)."""
    mode, _, extra = spec.partition("+")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON]
        with server(
            mode,
            endpoint,
            access_log=access_log,
            prefix=valgrind,
            env_extra={"BENCH_ENV": extra} if extra else None,  # applied by the app (hello.py)
            ready_timeout=300,
        ) as srv:
            pid = str(srv.proc.pid)
            load(srv.url, 15, 8)  # warm-up: imports, caches, the first exports
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True)
            requests = load(srv.url, 25, 8).requests
            subprocess.run(["callgrind_control", "-d", pid], capture_output=True)
        dumps = sorted(Path(tmp).glob("callgrind.out.*"))  # .1: the dump taken after the load
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        match = re.search(r"^summary:\s*(\d+)", dumps[0].read_text(), re.M)
        if match is None:
            raise RuntimeError("no summary line in callgrind's dump")
        return int(match.group(1)) / requests


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:  # not a mode: print the usage, run nothing
        print(__doc__)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    in_server = "--server" in argv
    access_log = "--no-access-log" not in argv
    specs = [a for a in argv if not a.startswith("--")] or ["none", "platform"]
    with sink() as s:
        if in_server:
            results = [
                (spec, server_instructions_per_request(spec, s.endpoint, access_log))
                for spec in specs
            ]
        else:
            results = [(spec, instructions_per_request(spec, s.endpoint)) for spec in specs]
    base = results[0][1]
    for spec, value in results:
        print(f"{spec:60s} {value:10,.0f} instructions/request  ({value - base:+,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
