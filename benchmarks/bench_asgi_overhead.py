"""Telemetry CPU cost per request, in-process (no server, no sockets): the noise-robust view.

``benchmarks/_asgi_loop.py`` calls the hello-world app through ASGI N times, 32
requests in flight (like wrk's 32 connections), in a fresh process per case and
measures the process's CPU time (event loop and exporter threads, final flush
included). Cases alternate over rounds; medians. ``overhead`` is the case's CPU
per request minus the uninstrumented one of the same scenario: the telemetry's
own cost. Two scenarios: without and with uvicorn's access log (uvicorn's own
logging configuration, one access line per request written to /dev/null), so
log correlation and log export are measured too.
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
    (
        "platform_otel.init(), pure-Python encoder (no C extension)",
        "platform-python-encoder",
        False,
    ),
    ("platform_otel.init(), official OTLP encoder", "platform-official-encoder", False),
    ("breakdown: lean path, no-op providers (platform-otel's own code)", "lean-noop", False),
    ("breakdown: lean path, lean span + histogram, nothing exported", "lean-sdk-only", False),
    ("official: opentelemetry-instrument", "none", True),
    ("official: FastAPIInstrumentor(exclude_spans)", "official-app", False),
]
ACCESS_LOG_CASES = CASES[:4]  # the access-log scenario: baseline and ours


def _one(mode: str, wrapper: bool, n: int, endpoint: str, access_log: bool) -> dict[str, Any]:
    cmd = [PYTHON, str(BENCH_DIR / "_asgi_loop.py"), str(n)]
    env = bench_env(BENCH_MODE=mode, **otlp_env(endpoint))
    if access_log:
        env["BENCH_ACCESS_LOG"] = "1"
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
    n = 3200 if quick else 16000
    rounds = 1 if quick else 3
    rows = []
    with sink() as s:
        for scenario, cases, access_log in (
            ("no access log", CASES, False),
            ("uvicorn access log", ACCESS_LOG_CASES, True),
        ):
            cpu: dict[str, list[float]] = {c[0]: [] for c in cases}
            for _ in range(rounds):
                for label, mode, wrapper in cases:
                    cpu[label].append(_one(mode, wrapper, n, s.endpoint, access_log)["cpu_us"])
            base = median(cpu[cases[0][0]])
            for label, _, _ in cases:
                value = median(cpu[label])
                rows.append(
                    row(
                        f"CPU per request, in-process ASGI, {scenario} (µs)",
                        label,
                        value,
                        "µs",
                        baseline=base,
                        higher_is_better=False,
                        notes=f"overhead {value - base:+.1f} µs/request; {rounds} round(s) x {n} requests, 32 in flight",
                        runs_us=[round(x, 1) for x in cpu[label]],
                    )
                )
    return rows
