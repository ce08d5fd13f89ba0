"""Fallback load generator when ``wrk`` is not installed: asyncio HTTP/1.1 keep-alive.

Usage: ``python benchmarks/_loadgen.py URL SECONDS CONNECTIONS``; prints
``rps p99_ms requests errors``. It runs in its own process (the server under test
must not share its interpreter) and is slower than wrk, so compare ratios only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit

__all__ = ["main"]


async def _worker(
    host: str, port: int, path: str, stop: float, lat: list[float], errs: list[int]
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 2"):
                errs[0] += 1
            lat.append(time.perf_counter() - t0)
    except (OSError, asyncio.IncompleteReadError):
        errs[0] += 1
    finally:
        writer.close()


async def _run(url: str, seconds: float, connections: int) -> tuple[float, float, int, int]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    lat: list[float] = []
    errs = [0]
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(*(_worker(host, port, path, stop, lat, errs) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    return len(lat) / elapsed, p99, len(lat), errs[0]


def main() -> int:
    url, seconds, connections = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    rps, p99, total, errors = asyncio.run(_run(url, seconds, connections))
    print(f"{rps:.1f} {p99:.3f} {total} {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
