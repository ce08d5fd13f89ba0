"""Benchmark client: streamed ``ollama`` chat calls, measuring wall and process CPU per call.

Run by ``benchmarks/bench_ollama.py`` in its own process, instrumented
(``platform_otel.init()``) or not. It reads commands on stdin (``ROUND n``) and
answers one JSON line per round: per-call wall seconds, the CPU seconds of the
calling thread (the work on the call's path) and of the whole process (all
threads: the exporters' work in the background counts too).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    url, mode = sys.argv[1], sys.argv[2]
    if mode != "none":
        import platform_otel

        # "platform": init() with its defaults; "platform-quiet": log level WARNING, so
        # httpx's own INFO line per request ("HTTP Request: POST ...") is not printed
        # and exported (that cost is the logging integration's, not the Ollama one's)
        level = "WARNING" if mode == "platform-quiet" else None
        platform_otel.init(service_name="bench-ollama", log_level=level)
    import ollama

    client = ollama.Client(host=url)
    messages = [{"role": "user", "content": "summarize the quarterly report"}]

    def call() -> int:
        return sum(1 for _ in client.chat(model="tiny", messages=messages, stream=True))

    for _ in range(3):  # warm-up: connection, imports, model "load"
        call()
    print("READY", flush=True)
    for line in sys.stdin:
        n = int(line.split()[1])
        walls = []
        cpu0, thread0 = time.process_time(), time.thread_time()
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            walls.append(time.perf_counter() - t0)
        cpu, thread = time.process_time() - cpu0, time.thread_time() - thread0
        print(json.dumps({"walls": walls, "cpu": cpu, "thread": thread}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
