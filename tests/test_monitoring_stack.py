"""The monitoring stack end to end: real traffic -> sidecar -> Jaeger and Prometheus -> dashboards, alerts.

One shared startup for the whole module, all plain processes on 127.0.0.1:

- Jaeger (``collector/jaeger/build.sh``; ``PLATFORM_OTEL_JAEGER`` or the build cache) with
  ``collector/jaeger/config.yaml`` as the trace store; without it a real OTLP receiver
  stands in and the Jaeger tests skip;
- the sidecar collector with ``collector/config.yaml`` (its traces exporter pointed at
  Jaeger, logs at a real OTLP receiver standing in for Loki);
- a real Prometheus with the shipped ``prometheus.yml`` and ``alerts.yaml`` (targets
  rewritten to the test ports, intervals 1 s, every alert's ``for`` 0 s);
- traffic: the document-pipeline example (``examples/doc_pipeline``: FastAPI service +
  MCP converter, two services, one trace per document) under uvicorn, and a second
  service that answers 5xx, fails pipeline items and serves its own metrics endpoint
  (the :9200 scrape convention).

Then every PromQL expression of every dashboard panel runs against Prometheus with the
variables filled in as Grafana fills them, and each must return a number; the alerts
the traffic deserves must be firing; every document's trace must be whole in Jaeger.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.demo_stack import stack as demo_stack
from tests.support.fixtures import (
    REPO_ROOT,
    Server,
    child_env,
    free_port,
    http_get,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.prometheus import Prometheus, serve_prometheus

pytestmark = pytest.mark.integration

COLLECTOR_DIR = REPO_ROOT / "collector"
DASHBOARDS = COLLECTOR_DIR / "grafana" / "dashboards"
EXAMPLE = REPO_ROOT / "examples" / "doc_pipeline"
OPS_SERVICE = "stack-ops"
ENVIRONMENT = "ci"

# Dashboards whose data does not come from this module's traffic, by uid, with the reason.
# The GPU & Ollama dashboard (needs a GPU and an Ollama server) belongs here; every other
# dashboard must have data in every panel.
DASHBOARDS_NOT_FED_BY_THIS_TRAFFIC: dict[str, str] = {
    "platform-otel-gpu": "GPU & Ollama: fed by NVML and a real Ollama server, not by this traffic",
}
# ...or by tag, for a dashboard whose uid is not known here yet.
DASHBOARD_TAGS_NOT_FED_BY_THIS_TRAFFIC: dict[str, str] = {
    "gpu": "GPU & Ollama: fed by NVML and a real Ollama server, not by this traffic",
}


def not_fed_by_this_traffic(dashboard: dict[str, Any]) -> str | None:
    """Why a dashboard's panels cannot have data here, or None when they must."""
    if dashboard["uid"] in DASHBOARDS_NOT_FED_BY_THIS_TRAFFIC:
        return DASHBOARDS_NOT_FED_BY_THIS_TRAFFIC[dashboard["uid"]]
    for tag in dashboard.get("tags", []):
        if tag in DASHBOARD_TAGS_NOT_FED_BY_THIS_TRAFFIC:
            return DASHBOARD_TAGS_NOT_FED_BY_THIS_TRAFFIC[tag]
    return None


# How the test fills Grafana's built-in interval variables: Prometheus scrapes every
# second here, so a minute holds the whole traffic run.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}


# --------------------------------------------------------------------------- binaries


def otelcol_binary() -> Path:
    path = demo_stack.otelcol_binary()
    if path is None:
        pytest.skip("collector not built: run collector/build.sh or set PLATFORM_OTEL_OTELCOL")
    return Path(path)


def jaeger_binary() -> Path | None:
    """$PLATFORM_OTEL_JAEGER, else collector/jaeger/build.sh's cache entry, else None."""
    path: Path | None = demo_stack.jaeger_binary()
    given = os.environ.get("PLATFORM_OTEL_JAEGER")
    assert not given or os.access(given, os.X_OK), f"PLATFORM_OTEL_JAEGER={given} is not executable"
    return path


def prometheus_binary() -> str:
    found: str | None = demo_stack.prometheus_binary()
    if not found:
        pytest.skip("prometheus not installed: apt-get install -y prometheus")
    return found


# --------------------------------------------------------------------------- clients


@dataclass
class Jaeger:
    query_base: str  # http://127.0.0.1:<query port>

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.query_base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        status, body = http_get(url, timeout=10)
        return status, (json.loads(body) if body.startswith(("{", "[")) else body)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        status, body = self.get(f"/api/traces/{trace_id}")
        if status != 200 or not body.get("data"):
            return None
        trace: dict[str, Any] = body["data"][0]
        return trace

    def services(self) -> list[str]:
        status, body = self.get("/api/services")
        assert status == 200, body
        return list(body["data"] or [])


# --------------------------------------------------------------------------- traffic

OPS_APP = """
import sys, time
import platform_otel

platform_otel.init(service_name=sys.argv[1], endpoint=sys.argv[2], protocol="grpc",
                   environment=sys.argv[3], prometheus_port=int(sys.argv[4]))

from fastapi import FastAPI
from fastapi.testclient import TestClient

app = FastAPI()

@app.get("/items/{item_id}")
def get_item(item_id: int) -> dict:
    if item_id % 4 == 0:
        raise ValueError("no item zero")  # a 500, error.type=ValueError
    return {"id": item_id}

client = TestClient(app, raise_server_exceptions=False)
# A hot GPU, as the GPU integration reports it (hw.temperature, unit Cel): checks the
# Prometheus name the GPU alert rules use.
from opentelemetry import metrics
from opentelemetry.metrics import Observation
metrics.get_meter("stack-ops").create_observable_gauge(
    "hw.temperature", callbacks=[lambda options: [Observation(91.0, {"hw.id": "GPU-test", "hw.type": "gpu"})]],
    unit="Cel",
)
pipe = platform_otel.pipeline("ops-batch")
depth = [3]
pipe.observe_queue("inbox", depth=lambda: depth[0])
deadline = time.monotonic() + float(sys.argv[5])
i = 0
while time.monotonic() < deadline:
    client.get(f"/items/{i}")
    client.get("/nowhere")  # 404, no route
    try:
        with pipe.stage("ingest", item_id=f"item-{i}", enqueued_at=time.time() - 0.5):
            if i % 3 == 0:
                raise RuntimeError("bad item")
    except RuntimeError:
        pass
    depth[0] = 3 + i % 5
    i += 1
    time.sleep(0.1)
# Keep serving the :9200-style endpoint (and exporting) until the test stops us.
print("requests", i, flush=True)
sys.stdin.read()
platform_otel.shutdown()
"""

DOCUMENTS = [
    ("report.txt", "Quarterly report\n\nRevenue grew by 12%.\n\nCosts were flat."),
    ("notes.txt", "Meeting notes\n\nShip the pipeline dashboard."),
    ("empty.txt", "   "),  # the converter rejects it: an MCP tool error, outcome=failure
]


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


@dataclass
class Stack:
    prometheus: Prometheus
    jaeger: Jaeger | None
    trace_sink: OtlpReceiver | None  # when there is no Jaeger
    collector: Server
    collector_self: str  # host:port of the collector's own metrics
    documents: list[dict[str, Any]] = field(default_factory=list)  # name, id, trace_id, status
    ops_port: int = 0


def prometheus_config(workdir: Path, targets: dict[str, str]) -> Path:
    """The shipped prometheus.yml and alerts.yaml, targets and intervals made testable."""
    text = (COLLECTOR_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    text = re.sub(r"(scrape_interval|evaluation_interval): \d+s", r"\1: 1s", text)
    config = yaml.safe_load(text)
    for job in config["scrape_configs"]:
        if job["job_name"] == "python-services":
            # The service's own endpoint instead of DNS discovery: one static target.
            job.pop("dns_sd_configs")
            job["static_configs"] = [{"targets": [targets["python-services"]]}]
        for static in job.get("static_configs", []):
            static["targets"] = [targets.get(t, t) for t in static["targets"]]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    rules = (COLLECTOR_DIR / "prometheus" / "alerts.yaml").read_text(encoding="utf-8")
    # Fire at once: the traffic runs for seconds, not the minutes the rules wait.
    rules = re.sub(r"(?m)^(\s+for:) \d+[smh]$", r"\1 0s", rules)
    (workdir / "alerts.yaml").write_text(rules, encoding="utf-8")
    return workdir / "prometheus.yml"


def run_documents(base: str, rounds: int, pause: float) -> list[dict[str, Any]]:
    """Submit DOCUMENTS ``rounds`` times, ``pause`` s apart (Prometheus sees the counters
    rise, not only appear); ask for an unknown document each round (a 404)."""
    submitted = []
    for _ in range(rounds):
        for name, text in DOCUMENTS:
            code, body = _post(f"{base}/documents", {"name": name, "text": text})
            assert code == 202, (code, body)
            submitted.append({"name": name, "id": body["id"], "trace_id": body["trace_id"]})
        assert http_get(f"{base}/documents/unknown")[0] == 404
        time.sleep(pause)
    deadline = time.monotonic() + 30
    for doc in submitted:
        while True:
            status, body = http_get(f"{base}/documents/{doc['id']}")
            state = json.loads(body)["status"] if status == 200 else "queued"
            if state != "queued":
                doc["status"] = state
                break
            assert time.monotonic() < deadline, f"document {doc} not converted"
            time.sleep(0.1)
    return submitted


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    otelcol = otelcol_binary()
    prometheus_bin = prometheus_binary()
    pytest.importorskip("fastapi")
    pytest.importorskip("mcp")
    jaeger_bin = jaeger_binary()
    sink: OtlpReceiver | None = None
    with contextlib.ExitStack() as stack_ctx:
        loki = OtlpReceiver("http").start()  # Loki's stand-in
        stack_ctx.callback(loki.stop)
        if jaeger_bin is not None:
            jenv, jports = demo_stack.jaeger_env()
            jaeger_proc = stack_ctx.enter_context(
                start_process(
                    [str(jaeger_bin), "--config", str(COLLECTOR_DIR / "jaeger" / "config.yaml")],
                    jenv,
                )
            )
            wait_http(f"http://127.0.0.1:{jports['health']}/status", jaeger_proc, timeout=30)
            jaeger: Jaeger | None = Jaeger(f"http://127.0.0.1:{jports['query']}")
            traces_endpoint = f"127.0.0.1:{jports['grpc']}"
        else:
            sink = OtlpReceiver("grpc").start()
            stack_ctx.callback(sink.stop)
            jaeger = None
            traces_endpoint = f"127.0.0.1:{sink.port}"

        env, ports = demo_stack.collector_env(
            tmp_path_factory.mktemp("otelcol-queue"), traces_endpoint, loki.endpoint
        )
        collector = stack_ctx.enter_context(
            start_process([str(otelcol), "--config", str(COLLECTOR_DIR / "config.yaml")], env)
        )
        wait_http(f"http://127.0.0.1:{ports['health']}/", collector, timeout=20)

        ops_port = free_port()
        workdir = tmp_path_factory.mktemp("prometheus")
        config = prometheus_config(
            workdir,
            {
                "otel-collector:8889": f"127.0.0.1:{ports['prometheus']}",
                "otel-collector:8888": f"127.0.0.1:{ports['telemetry']}",
                "python-services": f"127.0.0.1:{ops_port}",
            },
        )
        _prom, prometheus = stack_ctx.enter_context(
            serve_prometheus(prometheus_bin, config, workdir)
        )

        # Traffic, while Prometheus scrapes every second (rates need increases it saw).
        grpc_endpoint = f"http://127.0.0.1:{ports['grpc']}"
        ops = subprocess.Popen(
            [
                sys.executable,
                "-c",
                OPS_APP,
                OPS_SERVICE,
                grpc_endpoint,
                ENVIRONMENT,
                str(ops_port),
                "10",
            ],
            env=child_env(
                {
                    "OTEL_METRIC_EXPORT_INTERVAL": "1500",
                    "OTEL_BSP_SCHEDULE_DELAY": "200",
                    "PLATFORM_OTEL_PROMETHEUS_HOST": "127.0.0.1",
                }
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        stack_ctx.callback(lambda: ops.poll() is None and os.killpg(ops.pid, signal.SIGKILL))
        stack_ctx.callback(lambda: ops.poll() is None and ops.communicate(timeout=20))
        app_port = free_port()
        app_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "PLATFORM_OTEL_ENVIRONMENT": ENVIRONMENT,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "1500",
        }
        app = stack_ctx.enter_context(
            start_process(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--app-dir",
                    str(EXAMPLE),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(app_port),
                    "--log-level",
                    "warning",
                ],
                app_env,
            )
        )
        app_base = f"http://127.0.0.1:{app_port}"
        deadline = time.monotonic() + 40
        while True:
            assert app.proc.poll() is None, str(app)
            try:
                if http_get(f"{app_base}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, str(app)
            time.sleep(0.2)
        documents = run_documents(app_base, rounds=6, pause=1.0)
        assert ops.stdout is not None
        line = ops.stdout.readline()  # the ops traffic is over; its endpoint stays up
        assert line.startswith("requests"), line + (
            ops.stderr.read() if ops.poll() is not None and ops.stderr else ""
        )
        # Stop the service: it and its MCP converter flush their last spans and metrics.
        # (Exports every 1.5 s, scrapes every 1 s: Prometheus sees each export's exemplars,
        # which the SDK reports only for the interval they were recorded in.)
        app.stop()
        assert app.returncode in (0, -signal.SIGTERM), str(app)

        stack = Stack(
            prometheus,
            jaeger,
            sink,
            collector,
            f"127.0.0.1:{ports['telemetry']}",
            documents,
            ops_port,
        )
        prometheus.wait_query('traces_span_metrics_calls_total{job="doc-converter"}')
        prometheus.wait_query(f'pipeline_items_total{{job="{OPS_SERVICE}"}}')
        prometheus.wait_query('ALERTS{alertstate="firing"}')
        yield stack


# --------------------------------------------------------------------------- dashboards


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from _panels(panel)  # rows keep collapsed panels inside


def substitute(expr: str, values: dict[str, str]) -> str:
    """Fill Grafana variables ($name, ${name}, ${name:format}) the way Grafana does for PromQL."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def variable_values(prometheus: Prometheus, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable as Grafana sets it when the dashboard opens: its default ("All" -> allValue)."""
    values = dict(BUILTIN_VARIABLES)
    for var in dashboard.get("templating", {}).get("list", []):
        assert var["type"] == "query", var
        query = substitute(var["definition"], values)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {var['name']}: {query}"
        found = prometheus.get(
            f"/api/v1/label/{match.group(2)}/values", **{"match[]": match.group(1)}
        )
        assert found, f"variable {var['name']} of {dashboard['title']} lists nothing ({query})"
        current = var.get("current", {}).get("value")
        if var.get("includeAll") and current in (["$__all"], "$__all"):
            values[var["name"]] = var["allValue"]
        else:
            values[var["name"]] = found[0]
    return values


def dashboard_queries() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p.relative_to(DASHBOARDS).as_posix(), json.loads(p.read_text("utf-8")))
        for p in sorted(DASHBOARDS.rglob("*.json"))
    ]


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.parametrize(
    ("name", "dashboard"), dashboard_queries(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_panel_query_returns_data(stack: Stack, name: str, dashboard: dict[str, Any]) -> None:
    """Every PromQL target of every panel, variables filled in, returns a finite value."""
    if reason := not_fed_by_this_traffic(dashboard):
        pytest.skip(reason)
    values = variable_values(stack.prometheus, dashboard)
    empty: list[str] = []
    count = 0
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" not in target:
                continue
            count += 1
            expr = substitute(target["expr"], values)
            result = stack.prometheus.query(expr)
            if not _finite(result):
                empty.append(f"{panel['title']!r} [{target['refId']}]: {expr} -> {result}")
    assert count >= 10, f"{name}: only {count} queries"
    assert not empty, (
        f"{name}: panel queries without data (a dashboard fed by other traffic goes in "
        f"DASHBOARDS_NOT_FED_BY_THIS_TRAFFIC):\n" + "\n".join(empty)
    )


def test_exemplars_of_dashboard_panels_open_stored_traces(stack: Stack) -> None:
    """Panels with exemplars get trace ids from Prometheus, and those traces are in the trace store."""
    now = time.time()
    checked = 0
    for _name, dashboard in dashboard_queries():
        if not_fed_by_this_traffic(dashboard):
            continue
        values = variable_values(stack.prometheus, dashboard)
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                if not target.get("exemplar"):
                    continue
                # Exemplars belong to the histogram's bucket series inside the expression.
                selector = re.search(r"(\w+_bucket\{[^}]*\})", substitute(target["expr"], values))
                assert selector, target["expr"]
                data = stack.prometheus.get(
                    "/api/v1/query_exemplars",
                    query=selector.group(1),
                    start=str(now - 900),
                    end=str(now + 60),
                )
                ids = {
                    e["labels"]["trace_id"]
                    for s in data
                    for e in s["exemplars"]
                    if "trace_id" in e["labels"]
                }
                assert ids, f"{panel['title']}: no exemplars for {selector.group(1)}"
                checked += 1
                if stack.jaeger is not None and checked <= 3:
                    trace_id = sorted(ids)[0]
                    assert _wait_trace(stack.jaeger, trace_id), (
                        f"exemplar trace {trace_id} not in Jaeger"
                    )
    assert checked >= 5


def test_service_variable_lists_every_service(stack: Stack) -> None:
    services = stack.prometheus.get(
        "/api/v1/label/job/values",
        **{"match[]": f'target_info{{deployment_environment_name="{ENVIRONMENT}"}}'},
    )
    assert {"doc-pipeline", "doc-converter", OPS_SERVICE} <= set(services)


# --------------------------------------------------------------------------- alerts


def test_alerts_fire_on_the_errors_the_traffic_made(stack: Stack) -> None:
    """The rules, loaded by the shipped config, fire where the traffic failed, and only there."""
    firing = stack.prometheus.query('ALERTS{alertstate="firing"}')
    by_name: dict[str, list[dict[str, str]]] = {}
    for series in firing:
        by_name.setdefault(series["metric"]["alertname"], []).append(series["metric"])
    # stack-ops answers 1 in 4 /items requests with a 500; it reports twice: over OTLP
    # (job = its service.name) and on its own endpoint (job python-services).
    assert {(m["job"], m["http_route"]) for m in by_name["HttpServer5xxRatioHigh"]} == {
        (OPS_SERVICE, "/items/{item_id}"),
        ("python-services", "/items/{item_id}"),
    }
    # One document in three is empty: the converter's tool error.
    assert {(m["job"], m["gen_ai_tool_name"]) for m in by_name["McpToolErrorRatioHigh"]} == {
        ("doc-pipeline", "convert_document")
    }
    failing_stages = {(m["job"], m["stage"]) for m in by_name["PipelineStageFailureRatioHigh"]}
    assert failing_stages == {
        (OPS_SERVICE, "ingest"),
        ("python-services", "ingest"),
        ("doc-pipeline", "convert"),
    }
    # The hot GPU (hw.temperature 91 Cel, rendered hw_temperature_celsius) is over 85.
    assert {(m["job"], m["hw_id"]) for m in by_name["GpuTemperatureHigh"]} >= {
        (OPS_SERVICE, "GPU-test")
    }
    # Healthy things do not alert: lag is sub-second, the collector refuses and drops nothing.
    for quiet in (
        "PipelineLagHigh",
        "OtelCollectorRefusingData",
        "OtelCollectorDroppingData",
        "OtelCollectorExportQueueNearFull",
    ):
        assert quiet not in by_name, by_name[quiet]


def test_python_service_is_scraped_on_its_own_endpoint(stack: Stack) -> None:
    """The python-services job scrapes a service's init(prometheus_port=...) endpoint."""
    up = stack.prometheus.wait_query('up{job="python-services"}')
    assert [float(u["value"][1]) for u in up] == [1.0]
    scraped = stack.prometheus.query(
        'http_server_request_duration_seconds_count{job="python-services"}'
    )
    assert "/items/{item_id}" in {s["metric"].get("http_route") for s in scraped}
    assert stack.prometheus.query(
        f'target_info{{job="python-services",service_name="{OPS_SERVICE}"}}'
    )


# --------------------------------------------------------------------------- the reference


def test_every_scraped_metric_is_in_the_telemetry_reference(stack: Stack) -> None:
    """Each metric a real Prometheus scraped is in docs/telemetry.md's Prometheus column, and back.

    From the collector (job = service.name: the example's services, the ops service, the
    span metrics), the names of the Prometheus column; from the ops service's own
    endpoint (job python-services), the in-process names. Back: every documented name of
    the integrations this traffic exercises (pipelines, HTTP server, MCP, span metrics)
    was scraped.
    """
    from tests.support.documented import metric_rows

    rows = metric_rows()
    exercised = ("Pipelines", "HTTP server", "MCP", "Sidecar collector (collector/)")
    expected = {n for r in rows if r.section in exercised for n in r.prometheus}
    if os.environ.get("PLATFORM_OTEL_LOWEST"):
        # At the lowest declared versions the MCP server session is still open at the
        # service's final flush (scripts/test.sh deselects the demo's check of it too).
        expected -= {
            n for r in rows if r.name == "mcp.server.session.duration" for n in r.prometheus
        }
    deadline = time.monotonic() + 15  # the services' last export (at exit) may be a scrape away
    while True:
        collector = stack.prometheus.metric_names(
            '{__name__=~".+",job!~"otel-collector-self|python-services"}'
        )
        if expected <= collector or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    in_process = stack.prometheus.metric_names('{__name__=~".+",job="python-services"}')
    assert {"pipeline_items_total", "traces_span_metrics_calls_total"} <= collector, collector
    assert "http_server_request_duration_seconds_bucket" in in_process, in_process
    undocumented = collector - {n for r in rows for n in r.prometheus}
    assert not undocumented, f"scraped, not in docs/telemetry.md: {sorted(undocumented)}"
    undocumented = in_process - {n for r in rows for n in r.in_process}
    assert not undocumented, f"scraped (prometheus_port), not documented: {sorted(undocumented)}"
    assert expected - collector == set(), (
        f"documented, never scraped: {sorted(expected - collector)}"
    )


# --------------------------------------------------------------------------- Jaeger


def _wait_trace(jaeger: Jaeger, trace_id: str, timeout: float = 15.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while (trace := jaeger.trace(trace_id)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return trace


@pytest.fixture(scope="module")
def jaeger(stack: Stack) -> Jaeger:
    if stack.jaeger is None:
        pytest.skip("Jaeger not built: run collector/jaeger/build.sh or set PLATFORM_OTEL_JAEGER")
    return stack.jaeger


def test_jaeger_has_every_document_trace_whole(stack: Stack, jaeger: Jaeger) -> None:
    """Each document's trace, read back from Jaeger's query API, is complete across both services."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from run_demo import check_trace  # the example's own definition of a complete trace
    finally:
        sys.path.remove(str(EXAMPLE))
    assert len(stack.documents) == 18
    for doc in stack.documents:
        trace = _wait_trace(jaeger, doc["trace_id"])
        assert trace is not None, f"trace {doc['trace_id']} of {doc['name']} not in Jaeger"
        spans = demo_stack.jaeger_spans(trace)
        assert check_trace(spans, failed=doc["status"] == "failed") == [], (doc, spans)
        # Parents right: every span but the root has its parent in the same trace.
        ids = {s.span_id for s in spans}
        assert [s.name for s in spans if s.parent_span_id not in ids] == ["POST /documents"]
        assert {s.service for s in spans} == {"doc-pipeline", "doc-converter"}
        assert (doc["status"] == "failed") == (doc["name"] == "empty.txt")


def test_jaeger_stores_every_span_the_sidecar_accepted(stack: Stack, jaeger: Jaeger) -> None:
    """Nothing lost between the sidecar and Jaeger: span counts match the collector's own."""
    assert {"doc-pipeline", "doc-converter", OPS_SERVICE} <= set(jaeger.services())

    def stored() -> int:
        span_ids: set[tuple[str, str]] = set()
        for service in ("doc-pipeline", "doc-converter", OPS_SERVICE):
            status, body = jaeger.get("/api/traces", service=service, limit="2000", lookback="1h")
            assert status == 200, body
            for trace in body["data"]:
                span_ids |= {(s["traceID"], s["spanID"]) for s in trace["spans"]}
        return len(span_ids)

    accepted = stack.prometheus.query("sum(otelcol_receiver_accepted_spans)")
    # The collector's own counter, read directly (Prometheus may lag a scrape behind).
    _status, body = http_get(f"http://{stack.collector_self}/metrics")
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("otelcol_receiver_accepted_spans")
    )
    assert accepted and total > 50
    deadline = time.monotonic() + 15
    while (count := stored()) < total and time.monotonic() < deadline:
        time.sleep(0.5)
    assert count == total
