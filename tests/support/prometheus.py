"""A client of a real Prometheus's HTTP API, for the end-to-end tests."""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tests.support.fixtures import http_get

__all__ = ["Prometheus"]


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
