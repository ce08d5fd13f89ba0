"""Open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the scheduled time.

Usage::

    python benchmarks/_openloop.py URL SECONDS RATE CONNECTIONS [--warmup S] [--drain S]
                                   [--late-ms MS] [--latencies FILE]

Prints one JSON object (``p50_ms``, ``p99_ms``, ``p999_ms``, ``max_ms``, ``rate``,
``target_rate``, ``requests``, ``answered``, ``errors``, ``late``, ``queued``,
``unfinished``, ``lag_p99_ms``, ``gen_lag_p99_ms``, ``connections_used``, ``cpu_s``).

Why open loop: a closed-loop generator (wrk, ``_loadgen.py``) sends the next request on a
connection only after the previous answer, so while the server stalls it simply stops
sending: the requests a real client population would have sent during the stall are never
made, and the few that wait are counted once ("coordinated omission"). Here request ``i``
is scheduled at ``start + i / RATE`` whatever happened before, and its latency runs from
that scheduled time to the last byte of its response. A request that cannot be sent on
time (every connection busy, or the generator itself behind) still has its wait counted;
it is reported as ``late`` when it left more than ``--late-ms`` after its scheduled time.

Connections: keep-alive, opened on demand up to ``CONNECTIONS`` and reused last-in
first-out (the hot ones stay hot, idle ones are dropped before the server's keep-alive
timeout closes them). When all ``CONNECTIONS`` are busy, requests queue here in order
and go out on the next free connection, their latency still counted from schedule.

``--warmup S`` runs the same schedule for ``S`` seconds first without recording it (the
pool's connections get opened, the server settles at the rate). Requests still unanswered ``--drain`` seconds after the last one was scheduled are
``unfinished``: they enter the percentiles with the time they had waited by then (a
lower bound), so a server that falls behind cannot look better by not answering.

It runs in its own process (the server under test must not share its interpreter),
with the garbage collector off. The loop's timers have about 1 ms resolution (epoll), so
requests leave in small batches. ``gen_lag_p99_ms`` (when the generator got to a request
minus its scheduled time) is the generator's own delay: high, it was starved of CPU and
the latencies include that; ``lag_p99_ms`` adds waits for a free connection (``queued``:
how many requests had one); ``cpu_s`` is its CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

__all__ = ["main", "percentile", "run"]

_IDLE_MAX_S = 3.0  # below uvicorn's 5 s keep-alive timeout: never reuse a connection it may close


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.scheduled: float | None = None  # scheduled time of the request in flight
        self.need = -1  # bytes of the whole response once the head is parsed
        self.status_ok = True
        self.last_used = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, scheduled: float, now: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.need = -1
        self.buf.clear()
        self.gen.record_send(scheduled, now)
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        if self.scheduled is None:  # bytes nobody asked for: the server misbehaves
            self.gen.errors += 1
            self._drop()
            return
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            self.status_ok = head.startswith((b"http/1.1 2", b"http/1.0 2"))
            length = 0
            pos = head.find(b"\r\ncontent-length:")
            if pos >= 0:
                stop = head.find(b"\r\n", pos + 2)
                length = int(head[pos + 17 : stop if stop >= 0 else len(head)])
            elif b"transfer-encoding: chunked" in head:  # not expected from the bench apps
                self._drop()  # connection_lost counts the request as an error
                return
            self.need = end + 4 + length
        if len(buf) < self.need:
            return
        now = time.monotonic()
        scheduled, self.scheduled = self.scheduled, None
        self.gen.record_done(scheduled, now, self.status_ok)
        if len(buf) > self.need:  # extra bytes: cannot trust the framing any more
            self.gen.errors += 1
            self._drop()
            return
        self.last_used = now
        self.gen.release(self, now)

    def _drop(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_busy = self.scheduled is not None
        self.closed = True
        self.gen.lost(self, was_busy)


class _Generator:
    def __init__(self, host: str, port: int, path: str, max_conns: int, late_s: float) -> None:
        self.host, self.port = host, port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.max_conns = max_conns
        self.late_s = late_s
        self.idle: list[_Conn] = []  # LIFO
        self.open = 0  # connections open or opening
        self.used = 0  # connections ever opened
        self.pending: deque[float] = deque()  # scheduled times waiting for a connection
        self.in_flight: set[float] = set()
        self.latencies: list[float] = []
        self.samples: list[tuple[float, float]] = []  # (scheduled, latency) when dumping
        self.keep_samples = False
        self.lags: list[float] = []  # send time - scheduled time, waits for a connection included
        self.gen_lags: list[float] = []  # dispatch time - scheduled time: the generator behind
        self.queued = 0  # requests that waited for a free connection
        self.last_answer = 0.0
        self.measure_from = 0.0  # requests scheduled before this are the unmeasured warmup
        self.late = 0
        self.errors = 0
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    # -- bookkeeping called by connections
    def record_send(self, scheduled: float, now: float) -> None:
        if scheduled < self.measure_from:
            return
        lag = now - scheduled
        self.lags.append(lag)
        if lag > self.late_s:
            self.late += 1

    def record_done(self, scheduled: float, now: float, ok: bool) -> None:
        self.in_flight.discard(scheduled)
        if not self.in_flight:
            self.done.set()
        if scheduled < self.measure_from:
            return
        self.last_answer = now
        if ok:
            self.latencies.append(now - scheduled)
            if self.keep_samples:
                self.samples.append((scheduled, now - scheduled))
        else:
            self.errors += 1

    def release(self, conn: _Conn, now: float) -> None:
        if self.pending:
            conn.send(self.pending.popleft(), now)
        else:
            self.idle.append(conn)

    def lost(self, conn: _Conn, was_busy: bool) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if was_busy and conn.scheduled is not None:
            self.errors += 1
            self.in_flight.discard(conn.scheduled)
            conn.scheduled = None
            if not self.in_flight:
                self.done.set()
        if self.pending and self.open < self.max_conns:
            self._open_for(self.pending.popleft())

    # -- dispatch
    def dispatch(self, scheduled: float, now: float) -> None:
        self.in_flight.add(scheduled)
        self.done.clear()
        measured = scheduled >= self.measure_from
        if measured:
            self.gen_lags.append(now - scheduled)  # the generator's own delay
        while self.idle:
            conn = self.idle.pop()
            if conn.closed:
                continue
            if now - conn.last_used > _IDLE_MAX_S:
                conn._drop()
                continue
            conn.send(scheduled, now)
            return
        if self.open < self.max_conns:
            self._open_for(scheduled)
        else:
            self.pending.append(scheduled)
            self.queued += measured

    def _open_for(self, scheduled: float) -> None:
        self.open += 1
        self.used += 1
        self.loop.create_task(self._connect_and_send(scheduled))

    async def _connect_and_send(self, scheduled: float) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.open -= 1
            self.errors += 1
            self.in_flight.discard(scheduled)
            if not self.in_flight:
                self.done.set()
            return
        conn.send(scheduled, time.monotonic())


async def run(
    url: str,
    seconds: float,
    rate: float,
    connections: int,
    *,
    drain: float = 2.0,
    warmup: float = 0.0,
    late_ms: float = 5.0,
    latencies_path: str | None = None,
) -> dict[str, Any]:
    """Schedule ``seconds * rate`` GETs of ``url`` at ``rate`` per second; see the module doc."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    gen = _Generator(host, port, parts.path or "/", connections, late_ms / 1000.0)
    gen.keep_samples = latencies_path is not None
    interval = 1.0 / rate
    measured = max(1, int(seconds * rate))
    total = int(warmup * rate) + measured
    cpu0 = time.process_time()
    begin = time.monotonic() + 0.05
    start = gen.measure_from = begin + (total - measured) * interval
    i = 0
    while i < total:
        now = time.monotonic()
        due = begin + i * interval
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while i < total and due <= now:  # everything that fell due while we slept
            gen.dispatch(due, now)
            i += 1
            due = begin + i * interval
    end = begin + total * interval
    deadline = max(end, time.monotonic()) + drain
    if gen.in_flight:
        try:
            await asyncio.wait_for(gen.done.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            pass
    cpu = time.process_time() - cpu0
    # Unanswered by the deadline: counted with the wait they had so far (a lower bound).
    unfinished = sorted(s for s in gen.in_flight if s >= start)
    stop = time.monotonic()
    lat = sorted(gen.latencies + [stop - s for s in unfinished])
    lags = sorted(gen.lags)
    gen_lags = sorted(gen.gen_lags)
    answered = len(gen.latencies)
    if latencies_path is not None:
        with open(latencies_path, "w") as fh:
            for s, latency in gen.samples:
                fh.write(f"{s:.6f} {latency * 1000:.3f}\n")
            for s in unfinished:
                fh.write(f"{s:.6f} {(stop - s) * 1000:.3f} unfinished\n")
    return {
        "target_rate": rate,
        # answers per second, from the first scheduled request to the last answer
        "rate": round(answered / max(gen.last_answer - start, measured * interval), 1),
        "requests": measured,
        "answered": answered,
        "errors": gen.errors,
        "unfinished": len(unfinished),
        "late": gen.late,
        "late_ms": late_ms,
        "lag_p99_ms": round(percentile(lags, 99) * 1000, 3),
        "lag_max_ms": round((lags[-1] if lags else float("nan")) * 1000, 3),
        "gen_lag_p99_ms": round(percentile(gen_lags, 99) * 1000, 3),
        "queued": gen.queued,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "p999_ms": round(percentile(lat, 99.9) * 1000, 3),
        "max_ms": round((lat[-1] if lat else float("nan")) * 1000, 3),
        "connections_used": gen.used,
        "cpu_s": round(cpu, 3),
        "seconds": seconds,
        "warmup_s": warmup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("rate", type=float, help="requests per second")
    parser.add_argument("connections", type=int, help="most keep-alive connections to open")
    parser.add_argument("--drain", type=float, default=2.0, help="wait for answers after the end")
    parser.add_argument(
        "--warmup", type=float, default=0.0, help="seconds at the rate before measuring"
    )
    parser.add_argument("--late-ms", type=float, default=5.0, help="a send this late is 'late'")
    parser.add_argument("--latencies", default=None, help="write 'scheduled latency_ms' lines")
    args = parser.parse_args(argv)
    gc.disable()  # a collection pause here would read as server latency
    result = asyncio.run(
        run(
            args.url,
            args.seconds,
            args.rate,
            args.connections,
            drain=args.drain,
            warmup=args.warmup,
            late_ms=args.late_ms,
            latencies_path=args.latencies,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
