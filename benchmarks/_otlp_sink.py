"""A minimal OTLP/gRPC sink for benchmarks: accepts every export, decodes nothing.

A decoding receiver (``tests.support.otlp_receiver``) keeps every item and
parses protobuf, which costs CPU on the same cores as the server under test.
This sink answers each ``Export`` with an empty response (a valid encoding of
every ``Export*ServiceResponse``) and only counts requests and bytes, so the
exporters do their real work (serialise, send over gRPC) at a negligible cost
on the receiving side.

Run: ``python benchmarks/_otlp_sink.py [--port N]``; it prints ``PORT <n>`` once
listening, ``COUNTS {...}`` on SIGUSR1 and once more on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

__all__ = ["main", "start"]

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def start(port: int = 0) -> tuple[grpc.Server, int, dict[str, list[int]]]:
    """Start the sink on 127.0.0.1; returns (server, bound port, counts)."""
    counts: dict[str, list[int]] = {name: [0, 0] for name in _SERVICES}
    lock = threading.Lock()

    def handler(signal_name: str) -> Any:
        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            with lock:
                counts[signal_name][0] += 1
                counts[signal_name][1] += len(request)
            return b""

        return grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=None, response_serializer=None
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    for name, service in _SERVICES.items():
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"Export": handler(name)}),)
        )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server, port, counts = start(args.port)
    done = threading.Event()

    def report(*_: object) -> None:
        summary = {k: {"requests": v[0], "bytes": v[1]} for k, v in counts.items()}
        print("COUNTS " + json.dumps(summary), flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, report)
    # Only now: a SIGUSR1 that arrived before its handler was installed killed the sink (the
    # signal's default action), and every export of the run then failed silently.
    print(f"PORT {port}", flush=True)
    while not done.wait(0.2):
        pass
    server.stop(0)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
