"""Profile the instrumented FastAPI hot path under load, all threads included.

Usage: ``python benchmarks/profile_fastapi.py [--mode platform] [--seconds 10]``

Starts the benchmark app (``benchmarks/apps/hello.py``) under one uvicorn worker
with an OTLP sink, drives it with wrk and samples it with ``py-spy record``
(``pip install py-spy``), so the exporter threads are profiled too (cProfile
would see the event-loop thread only). Writes
``benchmarks/results/profile_<mode>.txt``: the share of samples per component
(each sample goes to the innermost frame that belongs to a known component, so
it is self time by component) and the top functions by self time.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import load, server, sink  # noqa: E402

__all__ = ["main", "summarize"]

# (component, substring of the frame's file path), first match wins, innermost frame first.
_COMPONENTS = [
    ("otlp encoding (exporter.otlp.proto.common)", "exporter/otlp/proto/common"),
    ("grpc export", "grpc"),
    ("sdk trace (span create/end, processors)", "opentelemetry/sdk/trace"),
    ("sdk metrics (histogram record, collect)", "opentelemetry/sdk/metrics"),
    ("sdk logs (log records, batch processor)", "opentelemetry/sdk/_logs"),
    ("attributes validation", "opentelemetry/attributes"),
    ("otel api / context", "opentelemetry/"),
    ("platform_otel logging integration", "platform_otel/instrumentation/logging"),
    ("platform_otel lean ASGI path", "platform_otel/instrumentation/_asgi"),
    ("platform_otel fast OTLP encoding (_otlp_fast)", "platform_otel/_otlp_fast"),
    ("platform_otel other", "platform_otel/"),
    ("stdlib logging", "/logging/"),
    ("uvicorn + h11 (HTTP server)", "uvicorn"),
    ("uvicorn + h11 (HTTP server)", "h11"),
    ("fastapi + starlette (app)", "fastapi"),
    ("fastapi + starlette (app)", "starlette"),
    ("asyncio event loop", "asyncio"),
]
_IDLE = ("wait", "select", "sleep", "poll", "_wait_for_tstate_lock", "acquire")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _component(frames: list[str]) -> str:
    """The component of the innermost frame that belongs to one (self time by component)."""
    for frame in reversed(frames):
        for name, needle in _COMPONENTS:
            if needle in frame:
                return name
    return "other (interpreter, threading, idle)"


def summarize(raw: str, top: int = 25) -> str:
    """Turn py-spy's collapsed stacks into a component table and a self-time top list."""
    by_component: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")[1:]  # first entry is the process/thread
        leaf = frames[-1].split(" (")[0] if frames else ""
        if leaf.endswith(_IDLE):  # a thread parked in wait()/select(): not CPU
            idle += count
            continue
        total += count
        by_component[_component(frames)] += count
        if frames:
            self_time[frames[-1]] += count
    out = [
        f"CPU samples: {total} (idle thread samples left out: {idle})",
        "",
        "| component | share of samples |",
        "|---|---|",
    ]
    for name, count in by_component.most_common():
        out.append(f"| {name} | {100 * count / total:.1f}% |")
    out += ["", f"top {top} functions by self time:", "", "| self | function |", "|---|---|"]
    for frame, count in self_time.most_common(top):
        match = _FRAME.match(frame)
        label = frame
        if match:
            file = match.group("file").split("site-packages/")[-1].split("/src/")[-1]
            label = f"{match.group('func')} ({file})"
        out.append(f"| {100 * count / total:.1f}% | `{label}` |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="platform", help="BENCH_MODE of benchmarks/apps/hello.py")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--raw", default="", help="also keep py-spy's collapsed stacks at this path"
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    raw_path = Path(args.raw) if args.raw else Path(tmp.name) / "profile.collapsed"
    with sink() as s, server(args.mode, s.endpoint, access_log=not args.no_access_log) as srv:
        load(srv.url, 2.0)
        loader = threading.Thread(target=load, args=(srv.url, args.seconds + 2))
        loader.start()
        subprocess.run(
            [py_spy, "record", "--pid", str(srv.proc.pid), "--duration", str(int(args.seconds)),
             "--rate", "250", "--format", "raw", "--full-filenames", "--output", str(raw_path), "--nonblocking"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        loader.join()
    report = summarize(raw_path.read_text())
    tmp.cleanup()
    header = (
        f"py-spy profile of benchmarks/apps/hello.py, BENCH_MODE={args.mode}, one uvicorn worker, "
        f"wrk load, access log {'off' if args.no_access_log else 'on'}, {args.seconds:.0f}s at 250 Hz, "
        "all threads.\n\n"
    )
    (results / f"profile_{args.mode}.txt").write_text(header + report + "\n")
    print(header + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
