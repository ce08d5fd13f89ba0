"""Serve app.py under uvicorn with two workers, send a few requests, stop it, show what to look at.

    python examples/fastapi_service/run.py

Telemetry goes to the usual OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, default
``localhost:4317``, e.g. the sidecar collector of ``collector/``); nothing needs to
listen there for this to run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["ada", "grace", "linus", "guido", "barbara", "ken", "margaret", "dennis"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict[str, str | int]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "APP_UPSTREAM_URL": base, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--timeout-graceful-shutdown", "3"]  # fmt: skip
    print("$ uvicorn app:app --workers 2 --port", port)
    server = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout or ()), daemon=True)
    reader.start()
    responses: list[dict[str, str | int]] = []
    try:
        deadline = time.monotonic() + 30
        while sum("Application startup complete" in line for line in lines) < 2:
            if server.poll() is not None or time.monotonic() > deadline:
                print("".join(lines))
                print("uvicorn did not start")
                return 1
            time.sleep(0.1)
        # Concurrent requests, so that both workers get some (more batches if one took all).
        with ThreadPoolExecutor(4) as pool:
            for n in range(0, 40, 4):
                batch = [NAMES[i % len(NAMES)] for i in range(n, n + 4)]
                responses += pool.map(lambda name: get(f"{base}/hello/{name}"), batch)
                if n >= 4 and len({r["pid"] for r in responses}) > 1:
                    break
    finally:
        server.send_signal(signal.SIGINT)  # what Ctrl-C does: workers flush their telemetry
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    reader.join(5)  # the server's last lines

    print("\nrequests (GET /hello/{name} -> httpx -> GET /greeting, one trace each):")
    for r in responses:
        print(f"  {r['name']:<9} worker pid {r['pid']:<7} service.instance.id {r['service_instance_id']}"
              f"  trace_id {r['trace_id']}")  # fmt: skip
    workers = {r["service_instance_id"] for r in responses}
    print(f"\n{len(workers)} worker(s) answered, each with its own service.instance.id")

    print("\nthe route's log lines, each with its request's trace id:")
    for line in lines:
        if "greeted" in line and re.search(r"trace_id=[0-9a-f]{32}", line):
            print("  " + line.rstrip())

    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    print(f"\nspans, metrics and logs were exported over OTLP to {endpoint}")
    print(f"look up trace {responses[0]['trace_id']} in your trace backend")
    return 0 if server.returncode in (0, -signal.SIGINT) else 1


if __name__ == "__main__":
    sys.exit(main())
