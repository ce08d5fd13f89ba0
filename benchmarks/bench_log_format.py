"""Per-line cost of putting the trace ids into each handler's line, by kind of formatter.

``logging.Handler.format`` is wrapped by ``init()``: inside a span, a text line
gets `` trace_id=… span_id=…`` appended and a JSON-object line gets the two
fields inserted; the kind of line is decided once per formatter (its first line
inside a span), so a line pays a substring check and a string build, never a
parse. This measures, in one child process after ``init()``, the same record
formatted by the wrapped ``Handler.format`` ("with ids") and by the original one
("uninstrumented"), in interleaved rounds, for records written inside and outside
a span, and the correlation step alone (``_correlated``, minus the cost of a call
with the same arguments): the difference of two whole-format timings is within
the noise of a shared machine, the step alone is not. Each number is the minimum
over the rounds. The record factory's own cost (the fields it stamps on every record) is
not in these numbers; docs/performance.md ("Log records and span end") has it.

Run alone: ``python benchmarks/bench_log_format.py [--quick]``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import PYTHON, bench_env, row

__all__ = ["run"]


class _HandJson(logging.Formatter):
    """The hand-written JSON formatter applications write."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _formatters() -> dict[str, tuple[logging.Formatter, str]]:
    """case -> (formatter, message logged)."""
    cases: dict[str, tuple[logging.Formatter, str]] = {
        "plain text (logging.Formatter)": (
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
            "converted doc-42",
        ),
        "hand-written JSON (json.dumps)": (_HandJson(), "converted doc-42"),
        "JSON message, %(message)s format": (
            logging.Formatter("%(message)s"),
            '{"event": "converted", "doc": "doc-42", "pages": 3}',
        ),
    }
    try:
        from pythonjsonlogger.json import JsonFormatter

        cases["python-json-logger"] = (JsonFormatter(), "converted doc-42")
    except ImportError:
        pass
    try:
        import structlog

        cases["structlog ProcessorFormatter + JSONRenderer"] = (
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(),
                ]
            ),
            "converted doc-42",
        )
    except ImportError:
        pass
    return cases


def _child(rounds: int, lines: int) -> None:
    import importlib

    import platform_otel

    # By its full name: the package's own ``logging`` name is the standard library's.
    log_integration = importlib.import_module("platform_otel.instrumentation.logging")

    platform_otel.init(
        service_name="bench-log-format",
        log_console="never",
        exporters={"traces": ["none"], "metrics": ["none"], "logs": ["none"]},
    )
    from opentelemetry import trace

    original = log_integration._state.old_format
    correlated = log_integration._correlated
    logger = logging.getLogger("bench")

    def same_call(handler: Any, record: Any, text: str) -> str:  # the call, without the work
        return text

    results: dict[str, dict[str, Any]] = {}
    for case, (formatter, message) in _formatters().items():
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        with trace.get_tracer("bench").start_as_current_span("request"):
            inside = logger.makeRecord("bench", logging.INFO, "app.py", 1, message, (), None)
        outside = logger.makeRecord("bench", logging.INFO, "app.py", 1, message, (), None)
        handler.format(inside)  # the first line inside a span decides the formatter's kind
        samples: dict[str, list[float]] = {}
        for _ in range(rounds):
            for where, record in (("in span", inside), ("no span", outside)):
                text = original(handler, record)
                variants = {
                    "uninstrumented": lambda r=record, h=handler: original(h, r),
                    "with ids": lambda r=record, h=handler: h.format(r),
                    "added": lambda r=record, h=handler, t=text: correlated(h, r, t),
                    "call": lambda r=record, h=handler, t=text: same_call(h, r, t),
                }
                for label, fmt in variants.items():
                    start = time.perf_counter_ns()
                    for _ in range(lines):
                        fmt()
                    elapsed = (time.perf_counter_ns() - start) / lines
                    samples.setdefault(f"{where}, {label}", []).append(elapsed)
        # The minimum of many short interleaved rounds: the least disturbed by other
        # processes on a shared machine (the median moved by 2x between runs here).
        results[case] = {key: min(values) for key, values in samples.items()}
        for where in ("in span", "no span"):
            results[case][f"{where}, added"] -= results[case].pop(f"{where}, call")
        results[case]["example"] = handler.format(inside)
    print(json.dumps(results))


def run(quick: bool) -> list[dict[str, Any]]:
    rounds, lines = (15, 1_000) if quick else (60, 2_000)
    proc = subprocess.run(
        [PYTHON, str(Path(__file__).resolve()), "--child", str(rounds), str(lines)],
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for case, values in results.items():
        for where in ("in span", "no span"):
            base = values[f"{where}, uninstrumented"]
            ours = values[f"{where}, with ids"]
            added = values[f"{where}, added"]
            rows.append(row("log_format", f"{case}, {where}: uninstrumented", base, "ns/line"))
            rows.append(
                row(
                    "log_format",
                    f"{case}, {where}: with ids",
                    ours,
                    "ns/line",
                    baseline=base,
                    higher_is_better=False,
                    notes=f"correlation itself: {added:.0f} ns per line",
                    added_ns=round(added, 1),
                    example=values["example"] if where == "in span" else "",
                )
            )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from run import render

        print(render(run("--quick" in sys.argv)))
