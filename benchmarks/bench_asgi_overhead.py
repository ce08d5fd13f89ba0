"""Telemetry CPU cost per request, in-process (no server, no sockets): the noise-robust view.

``benchmarks/_asgi_loop.py`` calls the hello-world app through ASGI N times in a
fresh process per case and measures the process's CPU time (event loop and
exporter threads, final flush included). Cases alternate over rounds; medians.
``overhead`` is the case's CPU per request minus the uninstrumented one: the
telemetry's own cost, which the throughput ratio divides by the server's cost
per request. uvicorn's access log does not run here (no uvicorn), so log
correlation cost is not included.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, PYTHON, bench_env, median, otlp_env, row, sink

__all__ = ["run"]

_BIN = Path(PYTHON).parent
CASES: list[tuple[str, str, bool]] = [
    ("uninstrumented", "none", False),
    ("platform_otel.init()", "platform", False),
    ("platform_otel.init(), official OTLP encoder", "platform-official-encoder", False),
    ("breakdown: lean path, no-op providers (platform-otel's own code)", "lean-noop", False),
    ("breakdown: lean path, SDK span + histogram, nothing exported", "lean-sdk-only", False),
    ("official: opentelemetry-instrument", "none", True),
    ("official: FastAPIInstrumentor(exclude_spans)", "official-app", False),
]


def _one(mode: str, wrapper: bool, n: int, endpoint: str) -> dict[str, Any]:
    cmd = [PYTHON, str(BENCH_DIR / "_asgi_loop.py"), str(n)]
    env = bench_env(BENCH_MODE=mode, **otlp_env(endpoint))
    if wrapper:
        cmd = [str(_BIN / "opentelemetry-instrument"), *cmd]
        env.update(
            OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp", OTEL_LOGS_EXPORTER="otlp"
        )
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=True, timeout=300
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    n = 3000 if quick else 20000
    rounds = 1 if quick else 3
    cpu: dict[str, list[float]] = {c[0]: [] for c in CASES}
    with sink() as s:
        for _ in range(rounds):
            for label, mode, wrapper in CASES:
                cpu[label].append(_one(mode, wrapper, n, s.endpoint)["cpu_us"])
    base = median(cpu[CASES[0][0]])
    rows = []
    for label, _, _ in CASES:
        value = median(cpu[label])
        rows.append(
            row(
                "CPU per request, in-process ASGI (µs)",
                label,
                value,
                "µs",
                baseline=base,
                higher_is_better=False,
                notes=f"overhead {value - base:+.1f} µs/request; {rounds} round(s) x {n} requests",
                runs_us=[round(x, 1) for x in cpu[label]],
            )
        )
    return rows
