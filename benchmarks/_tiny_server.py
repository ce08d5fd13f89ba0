"""A trivial HTTP/1.1 keep-alive server (asyncio protocol, one process) for checking load generators.

Usage::

    python benchmarks/_tiny_server.py [--port P] [--stall-after N] [--stall-ms MS]

Prints ``PORT <port>`` once listening. Every request gets a fixed 2-byte ``200``
answer. With ``--stall-after N`` the server blocks its whole event loop for
``--stall-ms`` before answering request ``N`` (once), as a garbage-collection pause or
a blocking call in a real app would, and prints ``STALL <start> <end>`` with
``time.monotonic()`` values (the same clock in every process on Linux), so a test can
tell which scheduled requests fell into the stall. Used by the open-loop generator's
test and to measure the generator's ceiling (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

__all__ = ["main"]

_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class _Http(asyncio.Protocol):
    count = 0
    stall_after = -1
    stall_s = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.buf = self.buf[end + 4 :]  # GET only: no body
            cls = type(self)
            cls.count += 1
            if cls.count == cls.stall_after:
                t0 = time.monotonic()
                time.sleep(cls.stall_s)
                print(f"STALL {t0:.6f} {time.monotonic():.6f}", flush=True)
            self.transport.write(_RESPONSE)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stall-after", type=int, default=-1)
    parser.add_argument("--stall-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    _Http.stall_after = args.stall_after
    _Http.stall_s = args.stall_ms / 1000.0
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
