"""The gateway tier on loopback: one sidecar (collector/sidecar-gateway.yaml) and two gateways (collector/gateway.yaml).

Real ``otelcol-platform`` processes; each gateway sends the traces it keeps to its own
real OTLP receiver standing in for the trace store, so the test sees which gateway
handled which span. A ``platform_otel.init()`` process sends traces to the sidecar:
plain ones, ones with an error span, and slow ones.

- the load_balancing exporter keeps every span of a trace on one gateway;
- tail sampling keeps every error trace and every slow trace, and the configured share
  of the rest;
- the gateways' span metrics count every span, sampled or not;
- a gateway restarted while its trace store is down loses nothing it had queued.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.demo_stack import stack as demo_stack
from tests.support.fixtures import (
    REPO_ROOT,
    Server,
    free_port,
    http_get,
    run_python,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import ExportedSpan, OtlpReceiver
from tests.test_collector import _queue_size

pytestmark = pytest.mark.integration

COLLECTOR_DIR = REPO_ROOT / "collector"
SAMPLE_PERCENT = 30
SLOW_MS = 1000
SERVICE = "gateway-e2e"

EMITTER = """
import json, sys, time
import platform_otel
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

platform_otel.init(service_name=sys.argv[1], endpoint=sys.argv[2], protocol="grpc")
tracer = trace.get_tracer("gateway-e2e")
out = {"plain": [], "error": [], "slow": []}
only = sys.argv[4] if len(sys.argv) > 4 else ""
for i in range(int(sys.argv[3])):
    kind = only or ("error" if i % 10 == 3 else "slow" if i % 10 == 7 else "plain")
    now = time.time_ns()
    # A slow trace: its root started 2 s ago (no sleeping needed).
    start = now - (2_000_000_000 if kind == "slow" else 5_000_000)
    root = tracer.start_span("handle request", start_time=start)
    with trace.use_span(root, end_on_exit=False):
        for j in range(3):
            with tracer.start_as_current_span(f"step {j}") as child:
                if kind == "error" and j == 1:
                    child.set_status(Status(StatusCode.ERROR, "step failed"))
    root.end(end_time=time.time_ns())
    out[kind].append(format(root.get_span_context().trace_id, "032x"))
    if i % 50 == 49:
        time.sleep(0.05)  # stay under the SDK's span queue
platform_otel.shutdown()
print(json.dumps(out))
"""
SPANS_PER_TRACE = 4
# 480 plain traces: the kept share's standard deviation is 2 points at 30 %.
TRACES = 600


def _otelcol() -> Path:
    path: Path | None = demo_stack.otelcol_binary()
    if path is None:
        pytest.skip("collector not built: run collector/build.sh or set PLATFORM_OTEL_OTELCOL")
    return path


@dataclass
class Gateway:
    env: dict[str, str]
    store: OtlpReceiver
    health: str
    metrics: str  # host:port of its prometheus exporter (span metrics)
    telemetry: str  # host:port of its own metrics
    grpc: str
    proc: Server | None = None


def _gateway_env(storage: Path, store: OtlpReceiver) -> tuple[dict[str, str], Gateway]:
    ports = {n: free_port() for n in ("grpc", "health", "prometheus", "telemetry")}
    env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports['prometheus']}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
        "OTELCOL_STORAGE_DIR": str(storage),
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        "OTELCOL_BATCH_TIMEOUT": "200ms",
        "TRACES_ENDPOINT": f"127.0.0.1:{store.port}",
        "GATEWAY_DECISION_WAIT": "2s",
        "GATEWAY_SAMPLE_PERCENT": str(SAMPLE_PERCENT),
        "GATEWAY_SLOW_TRACE_MS": str(SLOW_MS),
    }
    gateway = Gateway(
        env,
        store,
        f"127.0.0.1:{ports['health']}",
        f"127.0.0.1:{ports['prometheus']}",
        f"127.0.0.1:{ports['telemetry']}",
        f"127.0.0.1:{ports['grpc']}",
    )
    return env, gateway


@dataclass
class Tier:
    otelcol: Path
    gateways: list[Gateway]
    sidecar_grpc: str
    running: contextlib.ExitStack  # processes stopped when the module ends


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    otelcol = _otelcol()
    stores = [OtlpReceiver("grpc").start() for _ in range(2)]
    loki = OtlpReceiver("http").start()
    gateways = [
        _gateway_env(tmp_path_factory.mktemp(f"gateway-{i}"), store)[1]
        for i, store in enumerate(stores)
    ]
    sidecar_ports = {n: free_port() for n in ("grpc", "http", "health", "prometheus", "telemetry")}
    sidecar_env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{sidecar_ports['grpc']}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{sidecar_ports['http']}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{sidecar_ports['health']}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{sidecar_ports['prometheus']}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(sidecar_ports["telemetry"]),
        "OTELCOL_STORAGE_DIR": str(tmp_path_factory.mktemp("sidecar")),
        "OTELCOL_BATCH_TIMEOUT": "200ms",
        "LOKI_ENDPOINT": loki.endpoint,
        # A YAML list in one variable: the collector's env provider parses it.
        "OTELCOL_GATEWAYS": "[" + ", ".join(g.grpc for g in gateways) + "]",
    }
    with contextlib.ExitStack() as running:
        for receiver in (*stores, loki):
            running.callback(receiver.stop)
        for gateway in gateways:
            gateway.proc = running.enter_context(
                start_process(
                    [str(otelcol), "--config", str(COLLECTOR_DIR / "gateway.yaml")], gateway.env
                )
            )
        for gateway in gateways:
            wait_http(f"http://{gateway.health}/", gateway.proc, timeout=20)
        with start_process(
            [str(otelcol), "--config", str(COLLECTOR_DIR / "sidecar-gateway.yaml")], sidecar_env
        ) as sidecar:
            wait_http(f"http://127.0.0.1:{sidecar_ports['health']}/", sidecar, timeout=20)
            yield Tier(otelcol, gateways, f"http://127.0.0.1:{sidecar_ports['grpc']}", running)
            sidecar.stop()
            assert sidecar.returncode == 0, str(sidecar)


def _emit(tier: Tier, count: int, only: str = "") -> dict[str, list[str]]:
    args = [SERVICE, tier.sidecar_grpc, str(count)] + ([only] if only else [])
    ran = run_python(EMITTER, args=args, timeout=60, env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    assert ran.rc == 0, str(ran)
    out: dict[str, list[str]] = json.loads(ran.stdout.strip().splitlines()[-1])
    return out


def _by_trace(spans: list[ExportedSpan]) -> dict[str, list[ExportedSpan]]:
    out: dict[str, list[ExportedSpan]] = {}
    for span in spans:
        out.setdefault(span.trace_id, []).append(span)
    return out


def _wait_stable(gateways: list[Gateway], quiet: float = 1.5, timeout: float = 30.0) -> None:
    """Until no store received anything for ``quiet`` seconds (decisions made and sent)."""
    deadline = time.monotonic() + timeout
    last = -1
    since = time.monotonic()
    while time.monotonic() < deadline:
        count = sum(len(g.store.spans()) for g in gateways)
        if count != last:
            last, since = count, time.monotonic()
        elif count and time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)
    raise AssertionError(f"stores did not settle: {last} spans")


def _span_metric_calls(endpoint: str) -> float:
    _status, body = http_get(f"http://{endpoint}/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("traces_span_metrics_calls_total{")
        and f'service_name="{SERVICE}"' in line
    )


def test_traces_stay_whole_and_are_tail_sampled(tier: Tier) -> None:
    emitted = _emit(tier, TRACES)
    # Decisions come GATEWAY_DECISION_WAIT (2 s) after a trace's first span.
    time.sleep(2.0)
    _wait_stable(tier.gateways)
    per_gateway = [_by_trace(g.store.spans()) for g in tier.gateways]

    # Every span of a trace on the same gateway, and the trace whole there.
    both = set(per_gateway[0]) & set(per_gateway[1])
    assert not both, f"traces split across gateways: {sorted(both)[:5]}"
    assert all(per_gateway), "one gateway got no traces: routing does not spread"
    kept = {tid: spans for stored in per_gateway for tid, spans in stored.items()}
    for trace_id, spans in kept.items():
        assert len(spans) == SPANS_PER_TRACE, (trace_id, [s.name for s in spans])

    # Errors and slow traces always kept; the rest at the configured share.
    assert set(emitted["error"]) <= set(kept)
    assert set(emitted["slow"]) <= set(kept)
    plain_kept = len(set(emitted["plain"]) & set(kept)) / len(emitted["plain"])
    assert abs(plain_kept - SAMPLE_PERCENT / 100) <= 0.1, plain_kept  # 5 standard deviations
    assert set(kept) <= set(emitted["plain"]) | set(emitted["error"]) | set(emitted["slow"])

    # Span metrics are computed before sampling: every span counted, kept or not.
    total = TRACES * SPANS_PER_TRACE
    deadline = time.monotonic() + 15
    while (counted := sum(_span_metric_calls(g.metrics) for g in tier.gateways)) < total:
        assert time.monotonic() < deadline, counted
        time.sleep(0.3)
    assert counted == total


def _wait_stored(
    gateways: list[Gateway], trace_ids: list[str], timeout: float
) -> dict[str, list[ExportedSpan]]:
    """The gateways' stores by trace, once they hold every one of ``trace_ids`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        stored: dict[str, list[ExportedSpan]] = {}
        for gateway in gateways:
            stored.update(_by_trace(gateway.store.spans()))
        if set(trace_ids) <= set(stored) or time.monotonic() > deadline:
            return stored
        time.sleep(0.3)


def _restart(tier: Tier, gateway: Gateway) -> None:
    """Start ``gateway`` again (same ports and storage), kept running until the module ends."""
    server = start_process(
        [str(tier.otelcol), "--config", str(COLLECTOR_DIR / "gateway.yaml")], gateway.env
    )
    gateway.proc = tier.running.enter_context(server)
    wait_http(f"http://{gateway.health}/", gateway.proc, timeout=20)


def test_gateway_restart_loses_nothing_queued(tier: Tier) -> None:
    """Gateway B's store is down; B queues its kept traces on disk, restarts, then delivers them."""
    b = tier.gateways[1]
    for gateway in tier.gateways:
        gateway.store.clear()
    b.store.stop()
    emitted = _emit(tier, 60, only="error")  # all kept: the counts are exact
    deadline = time.monotonic() + 20
    while _queue_size(b.telemetry, "otlp_grpc/traces") < 1:
        assert time.monotonic() < deadline, "gateway B queued nothing"
        time.sleep(0.2)
    time.sleep(2.5)  # the rest of B's decisions (decision_wait 2 s) reach its queue
    assert b.proc is not None
    b.proc.stop()
    assert b.proc.returncode == 0, str(b.proc)
    b.store.start()
    with start_process(
        [str(tier.otelcol), "--config", str(COLLECTOR_DIR / "gateway.yaml")], b.env
    ) as restarted:
        b.proc = restarted
        wait_http(f"http://{b.health}/", restarted, timeout=20)
        stored = _wait_stored(tier.gateways, emitted["error"], timeout=30)
        assert set(emitted["error"]) <= set(stored), len(set(emitted["error"]) - set(stored))
        assert _by_trace(b.store.spans()), "nothing came from B's queue"
        assert all(len(stored[t]) == SPANS_PER_TRACE for t in emitted["error"])
        restarted.stop()
        b.proc = None
    _restart(tier, b)


def test_sidecar_holds_a_restarting_gateways_share(tier: Tier) -> None:
    """Gateway B is down while traffic flows: the sidecar retries B's share until B is back."""
    b = tier.gateways[1]
    for gateway in tier.gateways:
        gateway.store.clear()
    assert b.proc is not None
    b.proc.stop()
    emitted = _emit(tier, 60, only="error")  # all kept: the counts are exact
    time.sleep(1.0)  # B's share is now waiting in the sidecar's retry queue
    assert not b.store.spans()
    with start_process(
        [str(tier.otelcol), "--config", str(COLLECTOR_DIR / "gateway.yaml")], b.env
    ) as restarted:
        b.proc = restarted
        wait_http(f"http://{b.health}/", restarted, timeout=20)
        stored = _wait_stored(tier.gateways, emitted["error"], timeout=40)
        assert set(emitted["error"]) <= set(stored), len(set(emitted["error"]) - set(stored))
        assert _by_trace(b.store.spans()), "B's share did not reach B after its restart"
        assert all(len(stored[t]) == SPANS_PER_TRACE for t in emitted["error"])
        restarted.stop()
        b.proc = None
