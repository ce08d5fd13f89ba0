"""docs/telemetry.md stays true end to end: what really arrives over OTLP is documented there.

The flagship example (examples/doc_pipeline) runs once per module: FastAPI service,
pipeline stages, MCP client and server (two processes), logs. Every span name,
span and event attribute, metric, metric attribute, resource attribute and log
attribute that reaches the OTLP receiver must be listed in docs/telemetry.md,
except the names the example application defines itself (listed explicitly below).
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest

from platform_otel._config import InitOptions, load_settings
from platform_otel._resource import build_resource
from tests.support.datastores import StoreSet, datastores  # noqa: F401  (fixture)
from tests.support.documented import (
    DOC,
    assert_documented,
    assert_span_names_documented,
    attribute_families,
    documented_span_name,
    first_column_names,
    is_pattern,
    matches_pattern,
    matching_span_names,
    metric_rows,
    sections,
)
from tests.support.emitted import (
    APP_KEY_PREFIX,
    Emitted,
    collect,
    collector_rendering,
    example_scripts,
    sample_names,
)
from tests.support.otlp_receiver import OtlpReceiver

# Names the example application defines itself, not platform-otel: the converter's own
# tracer (scope "doc_converter", span "render markdown" with attribute "doc.paragraphs",
# see converter_server.py) and the `extra=` key app.py puts on its "queued" log line.
APP_SPAN_SCOPES = frozenset({"doc_converter"})
APP_SPANS = frozenset({("render markdown", "doc.paragraphs")})
APP_LOG_ATTRIBUTES = frozenset({"doc.name"})

# Series a collector or a Python process serves about itself, not the application's metrics.
COLLECTOR_OWN = ("otelcol_", "target_info", "up", "scrape_")
IN_PROCESS_OWN = ("process_", "python_", "target_info")

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@pytest.fixture(scope="module")
def received(demo_summary: dict[str, Any]) -> dict[str, Any]:
    return dict(demo_summary["received"])


def _platform_spans(received: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in received["spans"] if s["scope"] not in APP_SPAN_SCOPES]


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.lstrip().startswith("|") and not re.fullmatch(r"\s*\|[-| :]*\|\s*", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _first_column_names(text: str) -> list[str]:
    """The back-quoted names in the first cell of each table row (other cells hold values)."""
    return [name for row in _table_rows(text) for name in re.findall(r"`([^`]+)`", row[0])]


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {title}' in {DOC}"
    return match.group(1)


# --- end to end: what the example emits ---------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_span_names_from_the_demo_match_documented_names_or_patterns(
    received: dict[str, Any],
) -> None:
    """Every span name platform-otel (and the MCP SDK it routes) emits matches a name in docs/telemetry.md."""
    app = {
        (s["name"], a)
        for s in received["spans"]
        if s["scope"] in APP_SPAN_SCOPES
        for a in s["attributes"]
    }
    assert app == APP_SPANS, "the example's own spans changed: update APP_SPANS"
    spans = _platform_spans(received)
    patterns = {documented_span_name(s["name"], s["attributes"]) for s in spans}
    # The run covers HTTP server, pipeline stage and MCP client/server spans.
    assert {
        "{http.request.method} {http.route}",
        "{pipeline.name} {pipeline.stage}",
        "{mcp.method.name} {target}",
    } <= patterns, patterns
    (client,) = {
        documented_span_name(s["name"], s["attributes"])
        for s in spans
        if s["kind"] == "CLIENT" and s["attributes"].get("mcp.method.name") == "tools/call"
    }
    # mcp 2.x names its client spans itself; platform-otel names them on mcp 1.x.
    assert client in {"MCP send {mcp.method.name} {target}", "{mcp.method.name} {target}"}
    assert_span_names_documented((s["name"], s["attributes"]) for s in spans)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_span_and_event_attributes_from_the_demo_are_documented(received: dict[str, Any]) -> None:
    """Every span attribute, span event and event attribute that arrives is in docs/telemetry.md."""
    names: set[str] = set()
    for span in _platform_spans(received):
        names.update(span["attributes"])
        for event in span["events"]:
            names.add(event["name"])
            names.update(event["attributes"])
    assert {"http.route", "pipeline.stage", "mcp.method.name", "error.type"} <= names
    assert_documented(names)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_metrics_and_metric_attributes_from_the_demo_are_documented(
    received: dict[str, Any],
) -> None:
    """Every metric name and data point attribute that arrives over OTLP is in docs/telemetry.md."""
    metrics = {m["name"] for m in received["metrics"]}
    attributes = {a for m in received["metrics"] for a in m["attributes"]}
    # The session durations are recorded when the sessions close: they prove the shutdown flush.
    assert {
        "pipeline.items",
        "http.server.request.duration",
        "mcp.server.operation.duration",
        "mcp.client.session.duration",
        "mcp.server.session.duration",
    } <= metrics, metrics
    assert_documented(metrics | attributes)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_resource_attributes_from_the_demo_are_documented(received: dict[str, Any]) -> None:
    """Every resource attribute on the exported spans, metrics and logs is in the resource section."""
    keys = set(received["resource_attributes"])
    assert {"service.name", "service.instance.id", "telemetry.distro.name"} <= keys
    documented = set(_first_column_names(_section("Resource attributes")))
    assert keys <= documented, f"not in '## Resource attributes': {sorted(keys - documented)}"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_log_record_attributes_from_the_demo_are_documented(received: dict[str, Any]) -> None:
    """Every attribute platform-otel puts on exported log records is in docs/telemetry.md."""
    keys = {a for record in received["logs"] for a in record["attributes"]}
    assert keys >= APP_LOG_ATTRIBUTES, (
        "the example's extra= keys changed: update APP_LOG_ATTRIBUTES"
    )
    assert {"code.file.path", "code.line.number"} <= keys, keys
    assert_documented(keys - APP_LOG_ATTRIBUTES)


# --- the document itself -----------------------------------------------------------


def test_documented_names_are_well_formed() -> None:
    """Each name in a docs/telemetry.md table is a lowercase dotted name or a `{...}` pattern of them."""
    names = _first_column_names(DOC.read_text(encoding="utf-8"))
    assert len(names) > 50, names
    bad = []
    for name in names:
        if is_pattern(name):
            keys = _PLACEHOLDER.findall(name)
            literal = _PLACEHOLDER.sub("x", name)
            ok = all(_NAME.fullmatch(k) for k in keys) and bool(
                re.fullmatch(r"[A-Za-z0-9_./ -]+", literal)
            )
        else:
            ok = bool(_NAME.fullmatch(name))
        if not ok:
            bad.append(name)
    assert not bad, f"malformed names in docs/telemetry.md tables: {bad}"


def test_resource_section_lists_what_build_resource_produces() -> None:
    """The resource attributes section lists every key build_resource() sets, and no key it never sets."""
    documented = set(_first_column_names(_section("Resource attributes")))
    plain = set(build_resource(load_settings({}), {}).attributes)
    k8s_env = {
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "K8S_POD_NAME": "pod-1",
        "K8S_NAMESPACE": "team",
        "K8S_NODE_NAME": "node-1",
    }
    full = set(
        build_resource(
            load_settings({}, InitOptions(service_version="1.2.3", environment="staging")), k8s_env
        ).attributes
    )
    assert plain <= full
    assert full - documented == set(), f"produced but not documented: {sorted(full - documented)}"
    # container.id is set only when running inside a container.
    never = documented - full - {"container.id"}
    assert never == set(), f"documented but never produced: {sorted(never)}"


def test_span_name_patterns_match_only_names_with_the_parts_substituted() -> None:
    """`{...}` placeholders match one blank-free part; a dotted one must equal the span's attribute."""
    pattern = "{http.request.method} {http.route}"
    attrs = {"http.request.method": "GET", "http.route": "/documents/{doc_id}"}
    assert matches_pattern("GET /documents/{doc_id}", pattern, attrs)
    assert matches_pattern("GET /documents/{doc_id}", pattern)
    assert not matches_pattern("GET /documents/abc123", pattern, attrs)  # raw path, not the route
    assert not matches_pattern("tools/call convert", pattern, {"mcp.method.name": "tools/call"})
    assert matches_pattern(
        "tools/call convert", "{mcp.method.name} {target}", {"mcp.method.name": "tools/call"}
    )
    assert not matches_pattern("GET", pattern)
    assert not matches_pattern("MCP send tools/call convert", "{mcp.method.name} {target}")
    assert (
        documented_span_name("MCP send tools/call convert") == "MCP send {mcp.method.name} {target}"
    )
    assert documented_span_name("tools/list", {"mcp.method.name": "tools/list"}) is not None
    with pytest.raises(AssertionError, match="span names emitted but not documented"):
        assert_span_names_documented([("MCP receive tools/call convert", {})])
    # assert_documented stays exact: attribute and metric names never match a pattern.
    assert_documented(["{http.request.method} {http.route}", "http.route"])
    with pytest.raises(AssertionError, match="GET /items"):
        assert_documented(["GET /items"])


def test_gpu_section_lists_exactly_the_names_the_gpu_code_pins() -> None:
    """docs/telemetry.md "GPU" lists every name gpu.py pins and nothing else; the /api/ps gauges are in "LLM calls"."""
    from platform_otel.instrumentation import gpu

    pinned = {
        value
        for key, value in vars(gpu).items()
        if key.isupper() and isinstance(value, str) and _NAME.fullmatch(value) and "." in value
    }
    assert {"hw.gpu.utilization", "hw.id", "gpu.utilization.mean"} <= pinned
    section = _section("GPU").split("\n### Ollama residency", 1)[0]
    documented = set(_first_column_names(section))
    assert pinned - documented == set(), f"pinned but not documented: {sorted(pinned - documented)}"
    assert documented - pinned == set(), f"documented, never emitted: {sorted(documented - pinned)}"
    gauges = {"ollama.model.vram.ratio", "ollama.model.size", "ollama.model.vram.size", "ollama.up"}
    assert gauges <= set(_first_column_names(_section("LLM calls (Ollama)")))


# --- every example, both ways: emitted <-> documented --------------------------------
#
# The examples (every examples/<name>/run.py, the GPU ones on the stand-in NVML) and the
# API tour (tests/support/telemetry_tour.py: the configurations and error paths the
# examples leave out) run once per module against a real OTLP receiver, together with
# the flagship demo above (demo_summary). What arrives must be in the reference, and
# what the reference lists must arrive.

# Sections checked another way: resource attributes against build_resource() (above),
# the log line fields in the tour's stderr, the sidecar collector's own metrics in the
# collector's rendering (below).
NOT_OTLP_SECTIONS = ("Resource attributes", "Log line fields", "Sidecar collector (collector/)")


SDK_METRICS = "OpenTelemetry SDK's own metrics (SDK path)"
DATA_STORES = "Data-store client spans (PostgreSQL, MySQL/MariaDB, Redis, Memcached)"
# The tour's data-store steps: variable -> (server, its address, the modules the step needs).
TOUR_STORES: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "STORE_POSTGRES_DSN": ("postgres", lambda s: s.extra["dsn"], ("psycopg",)),
    "STORE_MYSQL_PORT": ("mariadb", lambda s: str(s.port), ("pymysql",)),
    "STORE_MEMCACHED_PORT": ("memcached", lambda s: str(s.port), ("pymemcache",)),
}


NO_STORES = (
    "no data-store client here"  # the whole section may go unemitted (some names are shared)
)


def _store_env(stores: StoreSet) -> tuple[dict[str, str], dict[str, str]]:
    """The tour's STORE_* variables for the servers and client libraries present; why not, per server."""
    env: dict[str, str] = {}
    missing: dict[str, str] = {}
    for variable, (server, address, modules) in TOUR_STORES.items():
        store = getattr(stores, server)
        instrumentation = f"opentelemetry.instrumentation.{modules[0]}"
        absent = [m for m in (*modules, instrumentation) if importlib.util.find_spec(m) is None]
        if store.skip_reason or absent:
            missing[server] = store.skip_reason or f"not installed: {', '.join(absent)}"
        else:
            env[variable] = address(store)
    return env, missing


def _never_emitted_allowed(stores: StoreSet, demo: dict[str, Any]) -> dict[str, str]:
    """Documented names no run here can emit, each with the reason (keep this tiny)."""
    allowed: dict[str, str] = {}
    _, missing = _store_env(stores)
    if "postgres" in missing:
        allowed["db.namespace"] = f"PostgreSQL's database name: {missing['postgres']}"
    if "postgres" in missing and "mariadb" in missing:
        reason = f"DB-API metrics need PostgreSQL or MariaDB: {missing['mariadb']}"
        for name in ("db.client.operation.duration", "db.client.response.returned_rows"):
            allowed[name] = reason
        allowed["db.operation.name"] = reason
    if len(missing) == len(TOUR_STORES) and demo.get("status_store") != "redis":
        # No data store at all (the mcp 1.x environment installs no data-store extras).
        for name in first_column_names(sections()[DATA_STORES]):
            allowed.setdefault(name, f"{NO_STORES}: {sorted(missing.values())}")
    from opentelemetry.sdk import environment_variables

    if not hasattr(environment_variables, "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"):
        reason = "this SDK release records only its otel.sdk.span.* metrics"
        for name in first_column_names(sections()[SDK_METRICS]):
            if not name.startswith(("otel.sdk.span.", "otel.span.")):
                allowed[name] = reason
    from importlib.metadata import version

    if int(version("mcp").split(".")[0]) >= 2:
        allowed["mcp.session.id"] = "mcp 1.x only (2.x: the SDK's own server spans)"
    else:
        allowed["MCP send {mcp.method.name} {target}"] = "mcp 2.x only (the SDK's client span)"
        allowed["MCP send {mcp.method.name}"] = "mcp 2.x only (the SDK's client span)"
    return allowed


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory, datastores: StoreSet) -> Emitted:  # noqa: F811
    """The examples and the tour, run once against one real OTLP receiver."""
    for module in ("fastapi", "ollama", "mcp", "structlog", "loguru", "httpx", "requests"):
        pytest.importorskip(module)
    from tests.test_gpu import FAKE_PYTHONPATH, mig_gpu, two_gpus

    workdir = tmp_path_factory.mktemp("emitted")
    # The examples see an A100 in MIG mode (hw.parent); the tour one GPU (named on
    # spans and latency histograms) with a process NVML cannot name (process.pid).
    one_gpu = two_gpus()
    one_gpu["devices"] = one_gpu["devices"][:1]
    one_gpu["devices"][0]["processes"].append([999_999, 1 << 20, None])
    envs = []
    for name, scenario in (("mig", mig_gpu()), ("one", one_gpu)):
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
        envs.append({"FAKE_PYNVML_SCENARIO": str(path), "PYTHONPATH": FAKE_PYTHONPATH})
    envs[1].update(_store_env(datastores)[0])  # a statement on each data store present
    with OtlpReceiver("grpc") as receiver:
        result = collect(receiver, envs[0], envs[1])
    for run in result.runs:
        assert run.rc == 0, str(run)
    return result


def _demo_names(received: dict[str, Any]) -> set[str]:
    names = {m["name"] for m in received["metrics"]}
    names |= {a for m in received["metrics"] for a in m["attributes"]}
    for span in _platform_spans(received):
        names.update(span["attributes"])
        for event in span["events"]:
            names.add(event["name"])
            names.update(event["attributes"])
    names |= {a for r in received["logs"] for a in r["attributes"]} - APP_LOG_ATTRIBUTES
    return {n for n in names if not n.startswith(APP_KEY_PREFIX)}


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_examples_follow_the_convention(emitted: Emitted) -> None:
    """Each examples/<name>/run.py exits 0 within 60 s with no GPU, Ollama or collector."""
    assert example_scripts(), "no examples/<name>/run.py found"
    slow = [f"{r.name} {r.seconds:.1f}s" for r in emitted.runs if r.seconds > 60]
    assert not slow, slow


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_everything_the_examples_emit_is_documented(emitted: Emitted) -> None:
    """Span names, span/event/metric/log attributes and metrics from the examples are in the reference."""
    assert_span_names_documented((name, dict(attrs)) for name, attrs in emitted.span_names)
    assert_documented(emitted.names - emitted.resource_attributes)
    resource = set(_first_column_names(_section("Resource attributes")))
    missing = emitted.resource_attributes - resource
    assert not missing, f"not in '## Resource attributes': {sorted(missing)}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_everything_documented_is_emitted(
    emitted: Emitted,
    received: dict[str, Any],
    demo_summary: dict[str, Any],
    datastores: StoreSet,  # noqa: F811
) -> None:
    """Each name the reference lists (outside NOT_OTLP_SECTIONS) arrives from some run."""
    documented = {
        name
        for title, text in sections().items()
        if title not in NOT_OTLP_SECTIONS
        for name in first_column_names(text)
    }
    spans = [
        *emitted.span_names,
        *((s["name"], s["attributes"]) for s in _platform_spans(received)),
    ]
    seen = emitted.names | _demo_names(received)
    seen |= {p for name, attrs in spans for p in matching_span_names(name, dict(attrs))}
    families = set(attribute_families(documented))
    seen |= {p for p in families if any(matches_pattern(n, p) for n in seen)}
    allowed = _never_emitted_allowed(datastores, demo_summary)
    never = sorted(documented - seen - set(allowed))
    assert not never, f"documented in docs/telemetry.md but emitted by no run: {never}"
    stale = sorted(n for n in set(allowed) & seen if not allowed[n].startswith(NO_STORES))
    assert not stale, f"emitted after all: remove from _never_emitted_allowed: {stale}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_metric_rows_give_the_instrument_and_unit_that_arrive(emitted: Emitted) -> None:
    """Every metric that arrives has a row whose instrument and unit are what the wire says."""
    rows = {
        row.name: row for row in metric_rows() if row.section != "Sidecar collector (collector/)"
    }
    missing = sorted(set(emitted.metrics) - set(rows))
    assert not missing, (
        f"metrics without a row (metric | instrument | unit | ... | Prometheus): {missing}"
    )
    wrong = {
        name: {"documented": (rows[name].instrument.split()[0], rows[name].unit), "emitted": kind}
        for name, kind in emitted.metrics.items()
        if (rows[name].instrument.split()[0], rows[name].unit) != kind
    }
    assert not wrong, wrong


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_metric_rows_list_every_attribute_that_arrives(
    emitted: Emitted, received: dict[str, Any]
) -> None:
    """Each metric's data point attributes (examples and demo) are in its row's attributes cell."""
    rows = {row.name: row for row in metric_rows()}
    arrived = {name: set(attrs) for name, attrs in emitted.metric_attributes.items()}
    for metric in received["metrics"]:
        arrived.setdefault(metric["name"], set()).update(metric["attributes"])
    missing = {
        name: sorted(attrs - rows[name].attributes)
        for name, attrs in arrived.items()
        if name in rows and attrs - rows[name].attributes
    }
    assert not missing, f"attributes not in the metric's row: {missing}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_prometheus_column_is_what_the_collector_serves(
    emitted: Emitted, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The examples' metrics and spans, replayed into the real collector, render as documented."""
    from tests.test_monitoring_stack import otelcol_binary

    body = collector_rendering(
        otelcol_binary(), emitted.requests, tmp_path_factory.mktemp("otelcol-storage")
    )
    served = {n for n in sample_names(body) if not n.startswith(COLLECTOR_OWN)}
    rows = [r for r in metric_rows() if r.name in emitted.metrics or r.name.startswith("traces.")]
    documented = {n for r in metric_rows() for n in r.prometheus}
    expected = {n for r in rows for n in r.prometheus}
    assert served - documented == set(), (
        f"served, not in a Prometheus column: {sorted(served - documented)}"
    )
    assert expected - served == set(), f"documented, not served: {sorted(expected - served)}"
    # The collector's dimensions, as Prometheus labels.
    labels = set(re.findall(r"[{,]([a-z_]+)=\"", body))
    for name in first_column_names(_section("Sidecar collector (collector/)")):
        if "." in name and not name.startswith(("traces.", "otel.metric.overflow")):
            assert name.replace(".", "_") in labels, (name, sorted(labels))


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_in_process_prometheus_column_is_what_prometheus_port_serves(emitted: Emitted) -> None:
    """The tour's own endpoint (prometheus_port) serves the documented in-process names."""
    served = {n for n in emitted.in_process_prometheus if not n.startswith(IN_PROCESS_OWN)}
    assert served, "the tour printed no INPROCESS line"
    rows = [r for r in metric_rows() if r.name in emitted.tour_metrics]
    documented = {n for r in metric_rows() for n in r.in_process}
    expected = {n for r in rows for n in r.in_process}
    assert served - documented == set(), f"served, not documented: {sorted(served - documented)}"
    assert expected - served == set(), f"documented, not served: {sorted(expected - served)}"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_log_line_fields_are_in_the_lines(emitted: Emitted) -> None:
    """The "Log line fields" names are what a traced log line carries on stderr."""
    (tour,) = [r for r in emitted.runs if r.name == "telemetry_tour"]
    for name in first_column_names(_section("Log line fields")):
        assert re.search(rf"\b{name}=[0-9a-f]{{16,32}}\b", tour.stderr), name
