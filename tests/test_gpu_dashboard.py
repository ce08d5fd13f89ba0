"""The "GPU health & Ollama inference" dashboard without a running stack.

tests/test_collector.py runs its queries against a real collector and Prometheus;
these checks need neither: every metric it queries is a Prometheus rendering listed in
docs/telemetry.md, it is provisioned like the others, and its latency panels ask
Grafana for exemplars (the link from a slow bucket to its trace).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.documented import documented_names
from tests.test_collector import (
    DASHBOARDS,
    OLLAMA_CLIENT_METRICS,
    _dashboard_exprs,
    ollama_client_metrics_pending,
    promql_metric_names,
)

DASHBOARD = DASHBOARDS / "Inference" / "gpu-ollama.json"


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _documented(name: str) -> bool:
    """A Prometheus name is documented as itself or as its histogram base (``x_*``, ``x_bucket``)."""
    docs = documented_names()
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return bool({name, base, f"{base}_*", f"{base}_bucket"} & docs) or name == "target_info"


def test_every_queried_metric_is_documented() -> None:
    names: set[str] = set()
    for expr in _dashboard_exprs(_load()):
        if expr.startswith("label_values("):
            expr = expr[len("label_values(") :].rsplit(",", 1)[0]
        names |= promql_metric_names(expr)
    assert {"hw_gpu_utilization_ratio", "ollama_model_vram_ratio"} <= names
    assert names >= OLLAMA_CLIENT_METRICS
    pending = ollama_client_metrics_pending()
    undocumented = sorted(n for n in names - pending if not _documented(n))
    assert not undocumented, (
        f"dashboard queries names missing from docs/telemetry.md: {undocumented}"
    )


def test_provisioned_with_the_others_and_unique() -> None:
    dashboard = _load()
    assert dashboard["title"] == "GPU health & Ollama inference"
    provider = (DASHBOARDS.parent / "provisioning" / "dashboards" / "dashboards.yaml").read_text(
        encoding="utf-8"
    )
    assert "path: /var/lib/grafana/dashboards" in provider  # compose mounts DASHBOARDS there
    uids = [json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS.rglob("*.json")]
    assert len(uids) == len(set(uids)) and dashboard["uid"] in uids
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_latency_panels_request_exemplars() -> None:
    latency = [
        (panel["title"], target)
        for panel in _load()["panels"]
        for target in panel.get("targets", ())
        if "gen_ai_client_operation_duration_seconds_bucket" in target["expr"]
        or "time_to_first_chunk" in target["expr"]
    ]
    assert len(latency) >= 6
    assert all(target.get("exemplar") is True for _title, target in latency), latency
    titles = {title for title, _t in latency}
    assert {"Latency p50 / p95 / p99 per model", "Latency vs GPU utilization"} <= titles
