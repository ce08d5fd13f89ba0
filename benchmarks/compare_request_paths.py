"""Side by side, in one run: the request path of another checkout against this one.

Usage::

    python benchmarks/compare_request_paths.py OTHER_SRC [--rounds 6] [--seconds 10]

``OTHER_SRC`` is the ``src/`` folder of another version of platform-otel with its C
extensions built in place (``python setup.py build_ext --inplace``); it goes first on
the server's ``PYTHONPATH``. Cases alternate round by round (uninstrumented, this
checkout's ``init()``, its SDK path, the other checkout's ``init()``), one uvicorn worker,
wrk on loopback, access log on and off; the table gives medians and the median of
per-round ratios against the uninstrumented run of the same round. This is how the
removal of the C request path was measured (docs/performance.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load, median, server, sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other_src", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    cases = [
        ("uninstrumented", "none", {}, None),
        ("init() (this checkout)", "platform", {}, None),
        (
            "init(), no C (this checkout)",
            "platform",
            {"PLATFORM_OTEL_OTLP_ENCODER": "python"},
            None,
        ),
        (
            "init(), SDK path (this checkout)",
            "platform",
            {"PLATFORM_OTEL_OTLP_ENCODER": "official"},
            None,
        ),
        ("init() (other checkout)", "platform", {}, args.other_src),
    ]
    print(
        "| access log | case | req/s (median) | ratio of medians | median of per-round ratios | p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    with sink() as s:
        for access_log in (True, False):
            rps: dict[str, list[float]] = {c[0]: [] for c in cases}
            p99: dict[str, list[float]] = {c[0]: [] for c in cases}
            for _ in range(args.rounds):
                for label, mode, env, extra in cases:
                    with server(
                        mode, s.endpoint, access_log=access_log, extra_path=extra, env_extra=env
                    ) as srv:
                        load(srv.url, 2.0)
                        result = load(srv.url, args.seconds)
                    rps[label].append(result.rps)
                    p99[label].append(result.p99_ms)
            base = rps[cases[0][0]]
            for label, *_ in cases:
                paired = median([r / b for r, b in zip(rps[label], base, strict=True)])
                print(
                    f"| {'on' if access_log else 'off'} | {label} | {median(rps[label]):,.0f} "
                    f"| {median(rps[label]) / median(base):.2f}x | {paired:.2f}x | {median(p99[label]):.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
