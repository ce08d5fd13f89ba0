"""Start-up time and peak memory: ``import platform_otel; init()`` vs bare Python vs ``opentelemetry-instrument``.

Each command is a fresh interpreter, run alternately; wall time covers the
whole process (start, init, exit with its bounded shutdown) and peak RSS comes
from ``wait4``'s rusage of that very process (``opentelemetry-instrument``
execs the interpreter, so it is the same pid), spawned by a small helper
(``_spawn_measure.py``) so the parent's memory does not leak into the peak. An OTLP sink is listening, as a
collector would be. The target compares *overheads* over bare ``python -c pass``:
platform-otel's must be <= 0.6x the official one's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, PYTHON, REPO, bench_env, median, otlp_env, row, sink

__all__ = ["run"]

_BIN = Path(PYTHON).parent
CASES: list[tuple[str, list[str]]] = [
    ("python -c pass", [PYTHON, "-c", "pass"]),
    ("import platform_otel; init()", [PYTHON, "-c", "import platform_otel; platform_otel.init()"]),
    (
        "opentelemetry-instrument python -c pass",
        [str(_BIN / "opentelemetry-instrument"), PYTHON, "-c", "pass"],
    ),
]


# The same three commands in a second environment that also has five data-store
# instrumentations and their libraries installed (``platform-otel[stores]``: psycopg,
# asyncpg, pymysql, redis, pymemcache), where opentelemetry-instrument imports every
# instrumented library at start and init() only arms import hooks.
STORES_VENV = BENCH_DIR / ".cache" / f"stores-venv-py{sys.version_info[0]}{sys.version_info[1]}"


def stores_python() -> str | None:
    """The interpreter of ``benchmarks/.cache/stores-venv-*`` (created once with pip), or None."""
    python = STORES_VENV / "bin" / "python"
    marker = STORES_VENV / ".complete"
    if marker.exists() and python.exists():
        return str(python)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(STORES_VENV)], check=True, timeout=120)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=300, capture_output=True)
        subprocess.run(
            [*pip, "-e", f"{REPO}[stores]", "opentelemetry-distro"],
            check=True,
            timeout=600,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    marker.write_text("ok\n")
    return str(python)


def stores_cases(python: str) -> list[tuple[str, list[str]]]:
    bindir = Path(python).parent
    suffix = " [5 store instrumentations installed]"
    return [
        ("python -c pass" + suffix, [python, "-c", "pass"]),
        (
            "import platform_otel; init()" + suffix,
            [python, "-c", "import platform_otel; platform_otel.init()"],
        ),
        (
            "opentelemetry-instrument python -c pass" + suffix,
            [str(bindir / "opentelemetry-instrument"), python, "-c", "pass"],
        ),
    ]


def _measure(cmd: list[str], env: dict[str, str], n: int = 1) -> list[tuple[float, float]]:
    """(wall seconds, peak RSS MiB) of ``n`` runs, spawned from a lean helper process."""
    helper = [PYTHON, "-S", "-E", str(BENCH_DIR / "_spawn_measure.py"), str(n), "--", *cmd]
    out = subprocess.run(helper, env=env, capture_output=True, text=True, check=True).stdout
    runs = []
    for line in out.splitlines():
        rec = json.loads(line)
        if rec["rc"] != 0:
            raise RuntimeError(f"{cmd} exited with {rec['rc']}")
        runs.append((rec["s"], rec["rss_mib"]))
    return runs


def run(quick: bool) -> list[dict[str, Any]]:
    repeats = 5 if quick else 15
    rows = _compare(CASES, repeats, "start-up (wall, whole process)")
    python = stores_python()
    if python is None:
        rows.append(
            row(
                "start-up, 5 store instrumentations installed",
                "not measured",
                float("nan"),
                "x",
                notes=f"could not create {STORES_VENV} (pip install -e '.[stores]' opentelemetry-distro)",
            )
        )
    else:
        rows += _compare(
            stores_cases(python), repeats, "start-up, 5 store instrumentations installed"
        )
    return rows


def _compare(cases: list[tuple[str, list[str]]], repeats: int, group: str) -> list[dict[str, Any]]:
    times: dict[str, list[float]] = {c[0]: [] for c in cases}
    rss: dict[str, list[float]] = {c[0]: [] for c in cases}
    with sink() as s:
        env = bench_env(**otlp_env(s.endpoint))
        for _label, cmd in cases:  # warm the page cache once
            _measure(cmd, env)
        for _ in range(repeats):
            for label, cmd in cases:
                ((t, m),) = _measure(cmd, env)
                times[label].append(t)
                rss[label].append(m)
    bare, ours, official = (median(times[c[0]]) for c in cases)
    bare_m, ours_m, official_m = (median(rss[c[0]]) for c in cases)
    ratio = (ours - bare) / (official - bare) if official > bare else float("nan")
    rows = []
    for (label, _), t, m in zip(
        cases, (bare, ours, official), (bare_m, ours_m, official_m), strict=True
    ):
        rows.append(
            row(
                group,
                label,
                t * 1000,
                "ms",
                baseline=bare * 1000,
                higher_is_better=False,
                notes=f"peak RSS {m:.1f} MiB; overhead {1000 * (t - bare):.0f} ms; median of {repeats}",
                runs_ms=[round(x * 1000, 1) for x in times[label]],
                peak_rss_mib=round(m, 1),
            )
        )
    rows.append(
        row(
            group,
            "overhead ratio: platform-otel / opentelemetry-instrument",
            ratio,
            "x",
            higher_is_better=False,
            target="<= 0.6",
            ok=ratio <= 0.6,
            notes=f"({1000 * (ours - bare):.0f} ms) / ({1000 * (official - bare):.0f} ms) over bare python",
        )
    )
    mem_ratio = (ours_m - bare_m) / (official_m - bare_m) if official_m > bare_m else float("nan")
    rows.append(
        row(
            group,
            "peak-RSS overhead ratio: platform-otel / opentelemetry-instrument",
            mem_ratio,
            "x",
            higher_is_better=False,
            notes=f"({ours_m - bare_m:.1f} MiB) / ({official_m - bare_m:.1f} MiB) over bare python",
        )
    )
    return rows
