"""A client of a real Prometheus's HTTP API, for the end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fixtures import Server, free_port, http_get, start_process, wait_http

__all__ = ["NOT_SERVICE_METRICS", "Prometheus", "serve_prometheus"]

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


@contextlib.contextmanager
def serve_prometheus(
    binary: str, config_file: Path, workdir: Path
) -> Iterator[tuple[Server, Prometheus]]:
    """``prometheus`` on a free 127.0.0.1 port with ``config_file`` (TSDB under ``workdir``,
    exemplar storage on): its process and a client, once ``/-/ready`` answers 200."""
    port = free_port()
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]
    with start_process(argv, cwd=workdir) as server:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready", server, timeout=20)
        deadline = time.monotonic() + 20
        while http_get(f"{base}/-/ready")[0] != 200:  # 503 while the TSDB opens
            assert time.monotonic() < deadline and server.proc.poll() is None, str(server)
            time.sleep(0.2)
        yield server, Prometheus(base)
