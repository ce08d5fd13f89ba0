"""Run every benchmark module and write the results table.

Usage::

    python benchmarks/run.py [--quick] [--only fastapi,startup] [--down-seconds 60]

Each ``benchmarks/bench_*.py`` exposes ``run(quick: bool) -> list[dict]``; its rows
(see ``_common.row``) are collected into ``benchmarks/results/latest.json`` and a
markdown table printed to stdout and written to ``benchmarks/results/latest.md``.
New integrations add a ``bench_<name>.py`` module; nothing here changes.
Ratios are always computed against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import host_info  # noqa: E402

__all__ = ["main", "render"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown table: one line per row, grouped by benchmark."""
    lines = [
        "| benchmark | case | value | ratio | target | ok | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        ok = {True: "yes", False: "**no**", None: ""}[r.get("ok")]
        lines.append(
            f"| {r['benchmark']} | {r['case']} | {_fmt(r['value'])} {r['unit']} | {ratio} "
            f"| {r.get('target', '')} | {ok} | {r.get('notes', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute in all)")
    parser.add_argument(
        "--only", default="", help="comma-separated module name parts, e.g. fastapi,startup"
    )
    parser.add_argument(
        "--down-seconds", type=float, default=None, help="collector outage length (default 60)"
    )
    parser.add_argument("--out", default=str(BENCH_DIR / "results"), help="results directory")
    args = parser.parse_args(argv)
    if args.down_seconds is not None:
        os.environ["BENCH_DOWN_SECONDS"] = str(args.down_seconds)

    wanted = [w for w in args.only.split(",") if w]
    modules = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if any(w in m for w in wanted)]

    started = time.time()
    host = host_info()
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for name in modules:
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(name)
            produced = module.run(args.quick)
        except Exception:  # one broken module must not hide the others' results
            failures[name] = traceback.format_exc()
            print(failures[name], file=sys.stderr)
            continue
        for r in produced:
            r.setdefault("module", name)
        rows.extend(produced)
        print(
            f"#   {name}: {len(produced)} rows in {time.perf_counter() - t0:.0f}s", file=sys.stderr
        )

    table = render(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "quick": args.quick,
        "host": host,
        "host_loadavg_after": host_info().get("loadavg"),
        "rows": rows,
        "failures": failures,
    }
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    header = (
        f"Benchmarks {result['started']} ({'quick' if args.quick else 'full'}), "
        f"{host.get('cpus')} CPUs, load avg before {host.get('loadavg')}, "
        f"after {result['host_loadavg_after']}, Python {host.get('python')}, "
        f"load generator {host.get('load_generator')}\n\n"
    )
    (out / "latest.md").write_text(header + table + "\n", encoding="utf-8")
    print(header + table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
