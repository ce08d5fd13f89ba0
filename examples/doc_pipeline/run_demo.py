"""Run the document pipeline on this machine and print the telemetry it produced.

Starts a tiny OTLP receiver, the FastAPI service (``app.py``, which starts the
MCP converter as a child process over stdio), submits a few documents, waits for
them to be converted, prints the trace tree of each document and checks that
each forms one trace: HTTP request -> enqueue -> worker stage -> MCP client
call -> MCP server tool (other process) -> the tool's own work. Then it stops
the service (which flushes its telemetry) and shows the metrics and the log
records that arrived over OTLP, the logs matched to their document's trace.

    python examples/doc_pipeline/run_demo.py            # trees, metrics, logs
    python examples/doc_pipeline/run_demo.py --json     # plus one JSON summary line
    python examples/doc_pipeline/run_demo.py --stack    # ... through collector, Prometheus, Jaeger

With ``--stack`` the service's telemetry goes through the sidecar collector, which
also feeds Prometheus and Jaeger, all started here as local processes (``_stack.py``;
each skipped with a note when not built); the demo then prints the Prometheus graph
pages and the Jaeger query URL to open, one document's trace read back from Jaeger,
and keeps the stack running until Ctrl-C (or ``--hold SECONDS``).

Exit status 0 when every document's trace is complete and its metrics and logs
arrived, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _collector import Collector, LogRecord, Point, Span  # noqa: E402
from _stack import Stack, jaeger_spans  # noqa: E402

DOCUMENTS = [
    ("report.txt", "Quarterly report\n\nRevenue grew by 12%.\n\nCosts were flat."),
    ("notes.txt", "Meeting notes\n\nShip the pipeline dashboard."),
    ("empty.txt", "   "),  # the converter rejects it: a tool error, outcome=failure
]
DONE = [name for name, text in DOCUMENTS if text.strip()]  # converted, then summarized by the LLM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    out = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        out.append(span)
    return out


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str]:
    """A throwaway ``redis-server`` for the document status, or why there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None, "redis-server not found: document status kept in memory"
    try:
        import opentelemetry.instrumentation.redis  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        return (
            None,
            'pip install "platform-otel[redis]" for Redis spans: document status kept in memory',
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(5)
    return None, "redis-server did not start: document status kept in memory"


def _is_redis(span: Span) -> bool:
    return span.kind == "CLIENT" and span.attributes.get("db.system.name") == "redis"


def check_trace(spans: list[Span], failed: bool, redis: bool = False) -> list[str]:
    """Problems with one document's trace (empty when complete)."""
    by_id = {s.span_id: s for s in spans}
    problems = []
    roots = [s for s in spans if s.parent_span_id not in by_id]
    if len(roots) != 1:
        problems.append(f"expected one root span, got {[r.name for r in roots]}")

    def find(pred: Any, what: str) -> Span | None:
        found = [s for s in spans if pred(s)]
        if len(found) != 1:
            problems.append(f"expected one {what}, got {len(found)}")
            return None
        return found[0]

    http = find(
        lambda s: s.kind == "SERVER" and s.name.startswith("POST /documents"), "HTTP server span"
    )
    enqueue = find(lambda s: s.name == "document-ingest enqueue", "enqueue stage span")
    convert = find(lambda s: s.name == "document-ingest convert", "convert stage span")
    client = find(
        lambda s: s.kind == "CLIENT" and "tools/call convert_document" in s.name, "MCP client span"
    )
    server = find(
        lambda s: s.kind == "SERVER" and s.name == "tools/call convert_document", "MCP server span"
    )
    chain = [
        ("enqueue", enqueue, http),
        ("convert", convert, enqueue),
        ("MCP client", client, convert),
    ]
    for what, child, parent in chain:
        if child and parent and parent not in _ancestors(child, by_id):
            problems.append(f"{what} span is not below {parent.name!r}")
    if client and server:
        if server.parent_span_id != client.span_id:
            problems.append("MCP server span is not a child of the MCP client span")
        if server.service != "doc-converter" or client.service != "doc-pipeline":
            problems.append(f"services: client {client.service}, server {server.service}")
        if failed and server.attributes.get("error.type") != "tool_error":
            problems.append("failed conversion lacks error.type=tool_error")
    if not failed and server:
        find(
            lambda s: s.name == "render markdown" and s.parent_span_id == server.span_id,
            "tool span",
        )
    if redis:  # the status writes: one under the enqueue stage, one under the convert stage
        for what, stage in (("enqueue", enqueue), ("convert", convert)):
            below = [s for s in spans if _is_redis(s) and stage in _ancestors(s, by_id)]
            if stage and not below:
                problems.append(f"no Redis span below the {what} stage")
    if not failed:  # the LLM step: a summarize stage and the Ollama call below it
        summarize = find(lambda s: s.name == "document-ingest summarize", "summarize stage span")
        llm = find(
            lambda s: s.kind == "CLIENT" and s.attributes.get("gen_ai.provider.name") == "ollama",
            "LLM span",
        )
        if summarize and convert and convert not in _ancestors(summarize, by_id):
            problems.append("summarize span is not below the convert stage")
        if llm and summarize and llm.parent_span_id != summarize.span_id:
            problems.append("LLM span is not a child of the summarize stage")
        if llm and not llm.attributes.get("gen_ai.usage.output_tokens"):
            problems.append("LLM span lacks gen_ai.usage.output_tokens")
    return problems


def print_tree(spans: list[Span]) -> None:
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Span]] = {}
    for s in sorted(spans, key=lambda s: s.start_ns):
        children.setdefault(s.parent_span_id if s.parent_span_id in by_id else "", []).append(s)

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            error = (
                f"  error.type={s.attributes['error.type']}" if "error.type" in s.attributes else ""
            )
            print(
                f"  {'  ' * depth}{s.name}  [{s.kind.lower()}, {s.service}, {s.duration_ms:.1f} ms]{error}"
            )
            walk(s.span_id, depth + 1)

    walk("", 0)


# --- metrics and logs -------------------------------------------------------------------

# What the demo shows of each metric, in this order: the attributes that label a series
# and whether the mean of a histogram is worth showing.
SHOWN_METRICS: dict[str, tuple[tuple[str, ...], bool]] = {
    "pipeline.items": (("stage", "outcome"), False),
    "pipeline.stage.duration": (("stage", "outcome"), True),
    "pipeline.lag": (("stage",), True),
    "pipeline.queue.depth": (("queue",), False),
    "http.server.request.duration": (
        ("http.request.method", "http.route", "http.response.status_code"),
        False,
    ),
    "mcp.client.operation.duration": (("mcp.method.name", "gen_ai.tool.name", "error.type"), False),
    "mcp.server.operation.duration": (("mcp.method.name", "gen_ai.tool.name", "error.type"), False),
}
_PROM_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def prometheus_name(point: Point) -> str:
    """The name a Prometheus exporter/remote-write gives the metric (counters ``_total``).

    Histograms are shown by their ``_count`` series (``_bucket`` and ``_sum`` exist too).
    """
    name = re.sub(r"[^a-zA-Z0-9_]", "_", point.metric)
    unit = _PROM_UNITS.get(point.unit, "" if point.unit.startswith("{") else point.unit)
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    if point.kind == "sum" and point.monotonic:
        name += "_total"
    elif point.kind == "histogram":
        name += "_count"
    return name


def merge_series(points: list[Point]) -> list[dict[str, Any]]:
    """Final value of each series (per service, metric and attributes), processes summed."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in points:
        key = (p.service, p.metric, tuple(sorted(p.attributes.items())))
        row = out.setdefault(
            key,
            {
                "name": p.metric,
                "prometheus": prometheus_name(p),
                "kind": p.kind,
                "service": p.service,
                "attributes": p.attributes,
                "value": 0,
                "count": 0,
                "sum": 0.0,
            },
        )
        row["value"] += p.value
        row["count"] += p.count
        row["sum"] += p.total
    return sorted(out.values(), key=lambda r: (r["name"], r["service"], str(r["attributes"])))


def series(metrics: list[dict[str, Any]], name: str, **attributes: Any) -> list[dict[str, Any]]:
    return [
        m
        for m in metrics
        if m["name"] == name and all(m["attributes"].get(k) == v for k, v in attributes.items())
    ]


def print_metrics(metrics: list[dict[str, Any]], width: int = 110) -> None:
    print("\nmetrics received over OTLP  (OpenTelemetry name [Prometheus name]: series)")
    for name, (label_keys, with_mean) in SHOWN_METRICS.items():
        rows = series(metrics, name)
        if not rows:
            print(f"  {name}: (nothing received)")
            continue
        sep = "/" if name.startswith("pipeline.") else " "
        items = []
        for row in rows:
            label = sep.join(
                str(row["attributes"][k]) for k in label_keys if k in row["attributes"]
            )
            if row["kind"] != "histogram":
                items.append(f"{label}={row['value']:g}")
            elif with_mean and row["count"]:
                items.append(
                    f"{label} n={row['count']} mean {row['sum'] / row['count'] * 1e3:.1f} ms"
                )
            else:
                items.append(f"{label} n={row['count']}")
        line = f"  {name} [{rows[0]['prometheus']}]:"
        for item in items:
            if len(line) + len(item) + 3 > width:
                print(line)
                line = "     "
            line += f"  {item}" if line.strip() else item
        print(line)
    others = sorted({m["name"] for m in metrics} - set(SHOWN_METRICS))
    if others:
        print(f"  also received: {', '.join(others)}")


def print_logs(
    logs: list[LogRecord],
    documents: list[tuple[str, str]],
    stderr_line: str | None,
    per_doc: int = 3,
) -> None:
    by_trace = {trace_id: name for name, trace_id in documents}
    mine = [r for r in logs if r.trace_id in by_trace]
    print(
        f"\nlog records received over OTLP: {len(mine)} of {len(logs)} carry a document's trace_id"
        f" (up to {per_doc} shown per document):"
    )
    for name, trace_id in documents:
        records = sorted((r for r in mine if r.trace_id == trace_id), key=lambda r: r.time_ns)
        shown = sorted(records, key=lambda r: not r.scope.startswith("doc_"))[:per_doc]
        for r in sorted(shown, key=lambda r: r.time_ns):
            print(f"  {name:<10} {r.trace_id[:12]}…  {r.service:<13} {r.body}")
    if stderr_line:
        print("  the same lines on the service's stderr end with trace_id=… span_id=…, e.g.:")
        print(f"    {stderr_line}")


def received_names(collector: Collector) -> dict[str, Any]:
    """Every name that arrived, with its instrumentation scope (for tests/test_telemetry_names.py)."""
    spans: dict[str, dict[str, Any]] = {}  # one example per name, scope and attribute keys
    for s in collector.spans():
        events = [{"name": e, "attributes": sorted(a)} for e, a in s.events]
        row = {"name": s.name, "kind": s.kind, "scope": s.scope, "service": s.service}
        key = json.dumps([row, sorted(s.attributes), events])
        spans.setdefault(key, row | {"attributes": s.attributes, "events": events})
    points = {(p.metric, p.scope, tuple(sorted(p.attributes))) for p in collector.points()}
    logs = {(r.scope, r.service, tuple(sorted(r.attributes))) for r in collector.logs()}
    resources = [s.resource for s in collector.spans()]
    resources += [p.resource for p in collector.points()] + [r.resource for r in collector.logs()]
    return {
        "spans": [spans[key] for key in sorted(spans)],
        "metrics": [{"name": n, "scope": sc, "attributes": list(a)} for n, sc, a in sorted(points)],
        "logs": [{"scope": sc, "service": sv, "attributes": list(a)} for sc, sv, a in sorted(logs)],
        "resource_attributes": sorted({k for resource in resources for k in resource}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print a JSON summary line")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--no-redis", action="store_true", help="keep document status in memory, as without Redis"
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="also run the collector, Prometheus and Jaeger (local processes) and print their URLs",
    )
    parser.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help="with --stack: keep the stack running this long (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="submit the documents this many times, 1 s apart, each later round with one"
        " request for an unknown document (default 1; 5 with --stack, so the graphs show rates)",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.stack else 1

    collector = Collector().start()
    if not args.stack:
        return run(args, collector, None)
    return run_with_stack(args, collector)


def run(args: argparse.Namespace, collector: Collector, stack: Stack | None) -> int:
    """The demo; with a ``stack`` its service exports to the stack's collector."""
    redis_proc, redis_url = (
        (None, "--no-redis: document status kept in memory") if args.no_redis else start_redis()
    )
    print(f"document status: {'Redis at ' + redis_url if redis_proc else redis_url}")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=(stack and stack.otlp_endpoint) or collector.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_BLRP_SCHEDULE_DELAY="200",
        # Metrics every 0.5 s (default 60 s) so they arrive while the demo waits; stopping
        # the service flushes the rest (session durations are recorded at shutdown).
        OTEL_METRIC_EXPORT_INTERVAL="500",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DOC_PIPELINE_REDIS_URL", None)
    if redis_proc is not None:
        env["DOC_PIPELINE_REDIS_URL"] = redis_url
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(HERE)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    # The service's (and the converter's) own logs go to a file, shown if something fails.
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - outlives the try block
        "w+", prefix="doc_pipeline-", suffix=".log", delete=False
    )
    service = subprocess.Popen(
        cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    summary: dict[str, Any] = {
        "documents": [],
        "status_store": "redis" if redis_proc is not None else "memory",
    }
    ok = True
    submitted: list[tuple[str, str, str]] = []
    signal_problems: list[str] = []
    interrupted = False
    try:

        def healthy() -> bool:
            if service.poll() is not None:
                raise RuntimeError(f"service exited with {service.returncode}")
            try:
                return _http("GET", f"{base}/healthz")[0] == 200
            except OSError:
                return False

        _wait(healthy, args.timeout, "the service to start")
        llm = _http("GET", f"{base}/healthz")[1].get("llm", "")
        summary["llm"] = llm
        print(f"LLM step (summarize): {llm}")
        for name, text in DOCUMENTS:
            code, body = _http("POST", f"{base}/documents", {"name": name, "text": text})
            assert code == 202, (code, body)
            submitted.append((name, body["id"], body["trace_id"]))
        print(f"submitted {len(submitted)} documents: {', '.join(n for n, _, _ in submitted)}")

        def finished() -> list[dict[str, Any]] | None:
            states = [_http("GET", f"{base}/documents/{doc_id}")[1] for _, doc_id, _ in submitted]
            return states if all(s and s["status"] != "queued" for s in states) else None

        states = _wait(finished, args.timeout, "the documents to be converted")

        def exported() -> bool:
            spans = collector.spans()
            return all(
                any(s.trace_id == tid and s.name == "document-ingest convert" for s in spans)
                and any(s.trace_id == tid and s.service == "doc-converter" for s in spans)
                and any(s.trace_id == tid and s.name.startswith("POST /documents") for s in spans)
                for _, _, tid in submitted
            ) and len([s for s in spans if s.name == "document-ingest summarize"]) == len(DONE)

        _wait(exported, args.timeout, "the spans to be exported")
        time.sleep(0.5)  # let the last batch of each process arrive
        spans = collector.spans()
        for (name, doc_id, trace_id), state in zip(submitted, states, strict=True):
            mine = [s for s in spans if s.trace_id == trace_id]
            failed = state["status"] == "failed"
            print(f"\n{name} ({state['status']}), trace {trace_id}, {len(mine)} spans:")
            print_tree(mine)
            problems = check_trace(mine, failed, redis=redis_proc is not None)
            for problem in problems:
                print(f"  PROBLEM: {problem}")
            ok = ok and not problems
            summary["documents"].append(
                {
                    "name": name,
                    "id": doc_id,
                    "status": state["status"],
                    "trace_id": trace_id,
                    "spans": [
                        {
                            "name": s.name,
                            "kind": s.kind,
                            "service": s.service,
                            "span_id": s.span_id,
                            "parent_span_id": s.parent_span_id,
                            "error.type": s.attributes.get("error.type"),
                            "db.system.name": s.attributes.get("db.system.name"),
                        }
                        for s in mine
                    ],
                    "problems": problems,
                }
            )

        def signals_arrived() -> bool:
            metrics = merge_series(collector.latest())
            converted = sum(r["value"] for r in series(metrics, "pipeline.items", stage="convert"))
            calls = {"mcp.method.name": "tools/call"}
            served = sum(
                r["count"] for r in series(metrics, "mcp.server.operation.duration", **calls)
            )
            traces = {(r.trace_id, r.service) for r in collector.logs()}
            summarized = sum(
                r["value"] for r in series(metrics, "pipeline.items", stage="summarize")
            )
            llm_calls = sum(r["count"] for r in series(metrics, "gen_ai.client.operation.duration"))
            return (
                converted == len(submitted)
                and llm_calls == summarized == len(DONE)
                and served == len(submitted)
                and all(
                    (tid, service) in traces
                    for _, _, tid in submitted
                    for service in ("doc-pipeline", "doc-converter")
                )
            )

        try:
            _wait(signals_arrived, min(args.timeout, 15.0), "the metrics and logs to be exported")
        except TimeoutError as exc:
            signal_problems.append(str(exc))
        more = []
        for _ in range(args.rounds - 1):  # more traffic, so that the graphs show rates
            time.sleep(1.0)
            for name, text in DOCUMENTS:
                more.append(_http("POST", f"{base}/documents", {"name": name, "text": text})[1])
            _http("GET", f"{base}/documents/unknown")  # a 404 for the HTTP graphs
        if more:
            _wait(
                lambda: all(
                    _http("GET", f"{base}/documents/{doc['id']}")[1]["status"] != "queued"
                    for doc in more
                ),
                args.timeout,
                "the other rounds' documents to be converted",
            )
            print(f"submitted and converted {len(more)} more documents ({args.rounds - 1} rounds)")
        summary["rounds"] = args.rounds
    except KeyboardInterrupt:
        interrupted = True  # stopped by the user: the service log has nothing to show
        raise
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)  # the service flushes its telemetry on SIGTERM
            try:
                service.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait(5)
        # The converter's final flush, after its stdin closed (through the collector: later).
        time.sleep(1.5 if stack and stack.otlp_endpoint else 0.3)
        if stack is None:
            collector.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(5)
        log_file.close()
        if interrupted:
            os.unlink(log_file.name)

    metrics = merge_series(collector.latest())
    documents = [(name, trace_id) for name, _, trace_id in submitted]
    logs = collector.logs()
    stderr_line = next(
        (
            line[line.index("INFO") :]  # without the timestamp
            for line in Path(log_file.name).read_text().splitlines()
            if "INFO doc_pipeline" in line and "trace_id=" in line
        ),
        None,
    )
    print_metrics(metrics)
    print_logs(logs, documents, stderr_line)
    for problem in signal_problems:
        print(f"  PROBLEM: {problem}")
    ok = ok and not signal_problems
    summary["metrics"] = metrics
    summary["logs"] = [vars(r) | {"resource": None} for r in logs]
    summary["received"] = received_names(collector)
    summary["ok"] = ok
    if not ok:
        print(f"service log ({log_file.name}):\n" + Path(log_file.name).read_text()[-5000:])
    else:
        os.unlink(log_file.name)
    print(
        "\nall documents traced end to end; metrics and logs received"
        if ok
        else "\nsome traces are incomplete"
    )
    if args.json:
        print("SUMMARY " + json.dumps(summary))
    if stack is not None:
        ok = show_stack(stack, documents, args.timeout) and ok
    return 0 if ok else 1


# --- the stack (--stack) ----------------------------------------------------------------

# The Prometheus graphs the demo prints: what each shows, and its PromQL (the expressions
# of the Pipelines and Services dashboards, for the demo's service).
GRAPHS: dict[str, str] = {
    "pipeline throughput, items/s by stage and outcome": (
        'sum by (stage, outcome) (rate(pipeline_items_total{job="doc-pipeline"}[1m]))'
    ),
    "pipeline failures, items/s by stage": (
        'sum by (stage) (rate(pipeline_items_total{job="doc-pipeline",outcome="failure"}[1m]))'
    ),
    "pipeline stage duration p95, seconds": (
        "histogram_quantile(0.95, sum by (le, stage)"
        ' (rate(pipeline_stage_duration_seconds_bucket{job="doc-pipeline"}[1m])))'
    ),
    "HTTP request rate, requests/s by route and status": (
        "sum by (http_route, http_response_status_code)"
        ' (rate(http_server_request_duration_seconds_count{job="doc-pipeline"}[1m]))'
    ),
    "HTTP request duration p95, seconds by route": (
        "histogram_quantile(0.95, sum by (le, http_route)"
        ' (rate(http_server_request_duration_seconds_bucket{job="doc-pipeline"}[1m])))'
    ),
}


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: the stack stops the same way."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Interrupted


def run_with_stack(args: argparse.Namespace, collector: Collector) -> int:
    """The demo through the stack; then hold it until Ctrl-C (or ``--hold``); always stop it."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    stack = Stack(collector.endpoint)
    rc = 1
    try:
        print("stack: starting the collector, Prometheus and Jaeger (local processes)")
        try:
            stack.start()
        except RuntimeError as exc:  # a component did not become ready: its log says why
            print(f"PROBLEM: {exc}")
            return 1
        for note in stack.notes:
            print(f"  skipped: {note}")
        running = [p.name for p in stack.processes]
        print(
            f"  running: {', '.join(running) or 'nothing'}"
            + (f" (files in {stack.workdir})" if stack.workdir else "")
        )
        rc = run(args, collector, stack)
        collector.stop_keeping()  # the collector goes on sending; the report is printed
        if not running:
            return rc  # nothing to keep running (the skipped lines above say why)
        if args.hold is None:
            print("\nthe stack keeps running: press Ctrl-C to stop it", flush=True)
            while True:
                time.sleep(3600)
        print(f"\nthe stack keeps running for {args.hold:g} s (--hold)", flush=True)
        time.sleep(args.hold)
    except KeyboardInterrupt:
        print("\nstopping the stack", flush=True)
    finally:
        # A second Ctrl-C (or SIGTERM) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        names = stack.stop()
        collector.stop()
        if names:
            print(f"stopped: {', '.join(names)}; removed {stack.workdir}", flush=True)
    return rc


def show_stack(stack: Stack, documents: list[tuple[str, str]], timeout: float) -> bool:
    """Print what to open in a browser and one document's trace as Jaeger has it."""
    ok = True
    if not (stack.prometheus_url or stack.jaeger_url):
        print("\nthe stack: nothing to open in a browser (see the skipped lines at the top)")
        return ok
    print("\nthe stack: open in a browser")
    if stack.prometheus_url:
        deadline = time.monotonic() + min(timeout, 30.0)
        for title, expr in GRAPHS.items():  # printed once Prometheus can plot them
            while not stack.prometheus_has_data(expr) and time.monotonic() < deadline:
                time.sleep(0.5)
            data = stack.prometheus_has_data(expr)
            ok = ok and data
            print(f"  Prometheus: {title}{'' if data else '  (PROBLEM: no data yet)'}")
            print(f"    {stack.prometheus_graph(expr)}")
        print(f"  Prometheus targets: {stack.prometheus_url}/classic/targets")
    if not stack.jaeger_url:
        return ok
    name, trace_id = documents[0]
    print(f"  Jaeger: the trace of {name} (query API; this Jaeger build's UI is a placeholder)")
    print(f"    {stack.jaeger_url}/api/traces/{trace_id}")
    problems: list[str] = ["not in Jaeger"]
    spans: list[Span] = []
    deadline = time.monotonic() + min(timeout, 15.0)
    while problems and time.monotonic() < deadline:
        trace = stack.jaeger_trace(trace_id)
        spans = jaeger_spans(trace) if trace else []
        problems = check_trace(spans, failed=False) if spans else ["not in Jaeger"]
        if problems:
            time.sleep(0.3)
    print(f"\n{name}, trace {trace_id}, read back from Jaeger: {len(spans)} spans")
    print_tree(spans)
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return ok and not problems


if __name__ == "__main__":
    sys.exit(main())
