"""A client of a real Prometheus's HTTP API, for the end-to-end tests."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tests.support.fixtures import http_get

__all__ = ["NOT_SERVICE_METRICS", "Prometheus"]

#: Series about the scrape, the collector, Prometheus and its rules: not the services' metrics.
NOT_SERVICE_METRICS = re.compile(
    r"up|scrape_.*|target_info|otelcol_.*|ALERTS.*|prometheus_.*|promhttp_.*|go_.*|process_.*"
    r"|python_.*|net_conntrack_.*|.*:.*"  # recording rules have a colon
)


@dataclass
class Prometheus:
    base: str

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=15)
        assert status == 200, f"{url}: {status} {body}"
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=promql)["result"]
        return result

    def wait_query(self, promql: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not (result := self.query(promql)):
            assert time.monotonic() < deadline, f"no result for {promql}"
            time.sleep(0.25)
        return result

    def metric_names(self, selector: str) -> set[str]:
        """Names of the series ``selector`` matches (``__name__`` values), own series left out."""
        names = self.get("/api/v1/label/__name__/values", **{"match[]": selector})
        return {n for n in names if not NOT_SERVICE_METRICS.fullmatch(n)}
