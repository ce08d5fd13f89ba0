"""Collector capacity: spans/s and metric data points/s one ``otelcol-platform`` sustains per CPU core, and its memory.

Runs the built collector (``collector/build.sh``; ``PLATFORM_OTEL_OTELCOL`` or the build
cache) with the shipped sidecar config (``collector/config.yaml``: memory_limiter,
resource, span_metrics, persistent sending queue with fsync, prometheus exporter) on
127.0.0.1, its trace exporter pointed at the benchmarks' non-decoding OTLP sink.
Loader processes send pre-encoded OTLP/gRPC export requests as fast as the collector
answers them (512 spans of 20 routes per request; 1000 data points per metrics request).

"Per core" is items accepted per CPU-second the collector process used (user + system,
from /proc), so the loader sharing the machine does not distort it; the wall-clock
rate is in the notes. Memory is the collector's peak RSS during the phase. Also runs
standalone: ``python benchmarks/bench_collector_capacity.py [--quick]``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import REPO, free_port, row, rss_kib, start_sink

__all__ = ["run"]

BENCH = "collector capacity"
SPANS_PER_REQUEST = 512
POINTS_PER_REQUEST = 1000
_TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def _otelcol() -> Path | None:
    given = os.environ.get("PLATFORM_OTEL_OTELCOL")
    if given:
        return Path(given)
    root = os.environ.get("PLATFORM_OTEL_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "platform-otel"
    )
    digest = hashlib.sha256((REPO / "collector" / "manifest.yaml").read_bytes()).hexdigest()
    path = Path(root) / f"otelcol-{digest}" / "otelcol-platform"
    return path if path.is_file() else None


def _kv(key: str, value: str | int) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2

    v = (
        common_pb2.AnyValue(int_value=value)
        if isinstance(value, int)
        else common_pb2.AnyValue(string_value=value)
    )
    return common_pb2.KeyValue(key=key, value=v)


def trace_payload() -> bytes:
    """One export request: 512 server spans of one service, 20 routes, 1 in 20 a 500."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    now = time.time_ns()
    spans = []
    for i in range(SPANS_PER_REQUEST):
        route = f"/api/v1/resource{i % 20}/{{id}}"
        status = 500 if i % 20 == 0 else 200
        spans.append(
            trace_pb2.Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                name=f"GET {route}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now - 3_000_000,
                end_time_unix_nano=now,
                attributes=[
                    _kv("http.request.method", "GET"),
                    _kv("http.route", route),
                    _kv("http.response.status_code", status),
                    _kv("url.scheme", "http"),
                    _kv("url.path", route.replace("{id}", str(i))),
                    _kv("server.address", "api.internal"),
                    _kv("user_agent.original", "bench/1.0"),
                ],
                status=trace_pb2.Status(
                    code=trace_pb2.Status.STATUS_CODE_ERROR if status == 500 else 0
                ),
            )
        )
    resource = resource_pb2.Resource(
        attributes=[
            _kv("service.name", "capacity-bench"),
            _kv("service.instance.id", "bench-1"),
            _kv("deployment.environment.name", "bench"),
            _kv("host.name", "bench-host"),
        ]
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource,
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return bytes(request.SerializeToString())


def metrics_payload() -> bytes:
    """One export request: 1000 cumulative data points (counters and gauges, 100 series each)."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    now = time.time_ns()
    metrics = []
    for m in range(POINTS_PER_REQUEST // 100):
        points = [
            metrics_pb2.NumberDataPoint(
                attributes=[_kv("queue", f"q{p}")],
                start_time_unix_nano=now - 60_000_000_000,
                time_unix_nano=now,
                as_double=float(p),
            )
            for p in range(100)
        ]
        if m % 2:
            metric = metrics_pb2.Metric(
                name=f"bench.gauge{m}", gauge=metrics_pb2.Gauge(data_points=points)
            )
        else:
            metric = metrics_pb2.Metric(
                name=f"bench.counter{m}",
                sum=metrics_pb2.Sum(
                    data_points=points,
                    aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                    is_monotonic=True,
                ),
            )
        metrics.append(metric)
    request = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource_pb2.Resource(attributes=[_kv("service.name", "capacity-bench")]),
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=metrics)],
            )
        ]
    )
    return bytes(request.SerializeToString())


def _fresh_trace_ids(payload: bytes) -> Any:
    """A function returning ``payload`` with new random trace ids (for tail sampling)."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
    offsets = []
    for span in request.resource_spans[0].scope_spans[0].spans:
        offsets.append(payload.find(span.trace_id))
    assert all(o >= 0 for o in offsets)

    def fresh() -> bytes:
        buf = bytearray(payload)
        for offset in offsets:
            buf[offset : offset + 16] = os.urandom(16)
        return bytes(buf)

    return fresh


def _load_worker(
    address: str, method: str, payload: bytes, seconds: float, threads: int, new_ids: bool
) -> None:
    """Send ``payload`` over ``threads`` concurrent gRPC calls until ``seconds`` pass."""
    import threading

    import grpc

    channel = grpc.insecure_channel(address)
    call = channel.unary_unary(method)
    deadline = time.monotonic() + seconds
    fresh = _fresh_trace_ids(payload) if new_ids else (lambda: payload)

    def loop() -> None:
        while time.monotonic() < deadline:
            try:
                call(fresh(), timeout=10)
            except grpc.RpcError:
                time.sleep(0.01)  # refused (memory_limiter): back off a little, as an SDK does

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    channel.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def _self_metric(endpoint: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    pattern = re.compile(rf"^{name}(?:_total)?(?:{{[^}}]*}})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(body))


def _phase(
    pid: int,
    telemetry: str,
    address: str,
    method: str,
    payload: bytes,
    counter: str,
    seconds: float,
    new_ids: bool = False,
) -> dict[str, float]:
    before_cpu, before = _cpu_seconds(pid), _self_metric(telemetry, counter)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_load_worker, args=(address, method, payload, seconds, 4, new_ids))
        for _ in range(2)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    peak = 0
    while any(p.is_alive() for p in procs):
        peak = max(peak, rss_kib(pid)[0])
        time.sleep(0.2)
    wall = time.monotonic() - start
    items = _self_metric(telemetry, counter) - before
    cpu = _cpu_seconds(pid) - before_cpu
    return {"items": items, "cpu": cpu, "wall": wall, "rss_mib": peak / 1024}


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """SIGTERM, wait up to ``timeout`` s (then SIGKILL); the seconds it took to exit."""
    start = time.monotonic()
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return time.monotonic() - start


def _start(
    binary: Path, config: str, storage: str, sink_port: int, **extra: str
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {n: free_port() for n in ("grpc", "http", "health", "prometheus", "telemetry")}
    env = dict(os.environ)
    env.update(
        OTELCOL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{ports['grpc']}",
        OTELCOL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{ports['http']}",
        OTELCOL_HEALTH_ENDPOINT=f"127.0.0.1:{ports['health']}",
        OTELCOL_PROMETHEUS_ENDPOINT=f"127.0.0.1:{ports['prometheus']}",
        OTELCOL_TELEMETRY_HOST="127.0.0.1",
        OTELCOL_TELEMETRY_PORT=str(ports["telemetry"]),
        OTELCOL_STORAGE_DIR=storage,
        TEMPO_ENDPOINT=f"127.0.0.1:{sink_port}",
        TRACES_ENDPOINT=f"127.0.0.1:{sink_port}",
        LOKI_ENDPOINT=f"http://127.0.0.1:{free_port()}/otlp",
    )
    env.update(extra)
    proc = subprocess.Popen(
        [str(binary), "--config", str(REPO / "collector" / config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports['health']}/", timeout=1)
            return proc, ports
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"collector ({config}) did not start") from None
            time.sleep(0.2)


def run(quick: bool, seconds: float | None = None) -> list[dict[str, Any]]:
    binary = _otelcol()
    if binary is None:
        return [row(BENCH, "skipped", 0.0, "", notes="collector not built: run collector/build.sh")]
    seconds = seconds or (4.0 if quick else 15.0)
    sink = start_sink()
    try:
        with tempfile.TemporaryDirectory(prefix="otelcol-bench-") as storage:
            # The sidecar, as compose runs it (512M container).
            proc, ports = _start(binary, "config.yaml", storage, sink.port, GOMEMLIMIT="400MiB")
            try:
                telemetry = f"127.0.0.1:{ports['telemetry']}"
                address = f"127.0.0.1:{ports['grpc']}"
                idle = rss_kib(proc.pid)[0] / 1024
                spans = _phase(
                    proc.pid, telemetry, address, _TRACE_METHOD, trace_payload(),
                    "otelcol_receiver_accepted_spans", seconds,
                )  # fmt: skip
                points = _phase(
                    proc.pid, telemetry, address, _METRICS_METHOD, metrics_payload(),
                    "otelcol_receiver_accepted_metric_points", seconds,
                )  # fmt: skip
                refused = _self_metric(telemetry, "otelcol_receiver_refused_spans")
            finally:
                _stop(proc, 60)
        with tempfile.TemporaryDirectory(prefix="otelcol-bench-gw-") as storage:
            # A gateway with its defaults (decision_wait 10 s, 10 % of plain traces kept),
            # every trace id new, as behind a load balancer.
            proc, ports = _start(binary, "gateway.yaml", storage, sink.port, GOMEMLIMIT="1600MiB")
            try:
                telemetry = f"127.0.0.1:{ports['telemetry']}"
                gateway = _phase(
                    proc.pid, telemetry, f"127.0.0.1:{ports['grpc']}", _TRACE_METHOD,
                    trace_payload(), "otelcol_receiver_accepted_spans", seconds, new_ids=True,
                )  # fmt: skip
                gateway_refused = _self_metric(telemetry, "otelcol_receiver_refused_spans")
            finally:
                # A clean shutdown decides on every trace still pending: it takes a while.
                shutdown = _stop(proc, 90)
    finally:
        sink.stop()
    cores = os.cpu_count() or 1
    note = f"{cores} cores shared with the loader"
    sidecar = "sidecar config.yaml (span_metrics, fsync queue)"
    return [
        row(
            BENCH,
            "sidecar: spans per CPU-second",
            spans["items"] / spans["cpu"] if spans["cpu"] else 0.0,
            "spans/s/core",
            notes=f"{spans['items'] / spans['wall']:,.0f} spans/s wall, {spans['cpu'] / spans['wall']:.2f} cores busy, {refused:.0f} refused; {sidecar}; {note}",
        ),
        row(
            BENCH,
            "sidecar: data points per CPU-second",
            points["items"] / points["cpu"] if points["cpu"] else 0.0,
            "points/s/core",
            notes=f"{points['items'] / points['wall']:,.0f} points/s wall, {points['cpu'] / points['wall']:.2f} cores busy; {sidecar}; {note}",
        ),
        row(
            BENCH,
            "sidecar: memory idle",
            idle,
            "MiB",
            higher_is_better=False,
            notes="RSS after start",
        ),
        row(
            BENCH,
            "sidecar: memory under span load",
            spans["rss_mib"],
            "MiB",
            higher_is_better=False,
            notes="peak RSS, GOMEMLIMIT=400MiB",
        ),
        row(
            BENCH,
            "sidecar: memory under metrics load",
            points["rss_mib"],
            "MiB",
            higher_is_better=False,
            notes="peak RSS, GOMEMLIMIT=400MiB",
        ),
        row(
            BENCH,
            "gateway: spans per CPU-second",
            gateway["items"] / gateway["cpu"] if gateway["cpu"] else 0.0,
            "spans/s/core",
            notes=f"{gateway['items'] / gateway['wall']:,.0f} spans/s wall, {gateway['cpu'] / gateway['wall']:.2f} cores busy, {gateway_refused:.0f} refused; gateway.yaml (span_metrics, tail_sampling 10 s); {note}",
        ),
        row(
            BENCH,
            "gateway: memory under span load",
            gateway["rss_mib"],
            "MiB",
            higher_is_better=False,
            notes="peak RSS, GOMEMLIMIT=1600MiB, spans held for decision_wait 10 s",
        ),
        row(
            BENCH,
            "gateway: shutdown with traces pending",
            shutdown,
            "s",
            higher_is_better=False,
            notes="SIGTERM to exit right after the load: decides and queues what it held (killed at 90 s)",
        ),
    ]


if __name__ == "__main__":
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in run("--quick" in sys.argv):
        print(json.dumps(r))
