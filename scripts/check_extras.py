#!/usr/bin/env python3
"""Check that each data-store extra resolves together with the development dependencies.

For each extra, ``pip install --dry-run --ignore-installed -e '.[dev,EXTRA]'``: pip
resolves from the package index as in a fresh virtual environment and installs
nothing. The contrib instrumentations pin exact ``opentelemetry-instrumentation``
releases, so an extra whose ranges cannot be satisfied together with the rest fails
here (``ResolutionImpossible``) rather than on a user's machine. Needs the package
index (about 10 s an extra with a warm pip cache) and pip >= 24.

    python scripts/check_extras.py                 # postgres, mysql, redis, memcached, stores
    python scripts/check_extras.py redis postgres  # some of them

Exit status 0 when every extra resolves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("postgres", "mysql", "redis", "memcached", "stores")


def resolve(extra: str) -> tuple[bool, str, float]:
    """(resolved, detail, seconds) for ``.[dev,extra]``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--report", str(report), "-e", f"{REPO}[dev,{extra}]"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        took = time.monotonic() - start
        if proc.returncode != 0:
            tail = [line for line in proc.stderr.splitlines() if line.strip()][-6:]
            return False, "\n    ".join(tail), took
        installed = {
            item["metadata"]["name"].lower(): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]
        }
    lines = sorted(
        f"{name} {version}"
        for name, version in installed.items()
        if name.startswith("opentelemetry-instrumentation")
    )
    return True, ", ".join(lines), took


def main(argv: list[str]) -> int:
    extras = argv or list(EXTRAS)
    failed = []
    for extra in extras:
        ok, detail, took = resolve(extra)
        print(f"[{'ok' if ok else 'FAIL'}] .[dev,{extra}] ({took:.1f} s)\n    {detail}", flush=True)
        if not ok:
            failed.append(extra)
    if failed:
        print(f"extras that do not resolve: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
