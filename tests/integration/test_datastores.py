"""Data-store spans from the contrib instrumentations ``init()`` enables (issue 17).

Real servers (PostgreSQL, MariaDB, Redis, Memcached from Debian's packages, see
``tests/support/datastores.py``), a real FastAPI service under uvicorn that only calls
``platform_otel.init()`` (``stores_app.py``), the contrib instrumentation packages
installed beside platform-otel (``pip install -e '.[dev,stores]'``), and a real OTLP
receiver. One service run serves every test of the module; a second one runs with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.datastores import StoreSet, datastores  # noqa: F401  (fixture)
from tests.support.documented import assert_documented, assert_span_names_documented
from tests.support.fixtures import (
    REPO_ROOT,
    doctor_report,
    free_port,
    http_get,
    otel_env,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import ExportedSpan, OtlpReceiver

pytestmark = [
    pytest.mark.integration,
    # The drivers and their instrumentations come with the data-store extras (installed in
    # .venv by scripts/test.sh; not at the lowest declared versions, docs/versions.md).
    pytest.mark.skipif(
        not all(
            importlib.util.find_spec(m)
            for m in ("redis", "pymemcache", "psycopg", "asyncpg", "pymysql")
        ),
        reason="the data-store extras are not installed (pip install -e '.[stores]')",
    ),
]

APP = REPO_ROOT / "tests" / "integration" / "stores_app.py"
SECRET = "secret-param-4711"

# route -> (store fixture attribute, instrumentation scope, python packages it needs)
ROUTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "redis": ("redis", "opentelemetry.instrumentation.redis", ("redis",)),
    "memcached": ("memcached", "opentelemetry.instrumentation.pymemcache", ("pymemcache",)),
    "psycopg": ("postgres", "opentelemetry.instrumentation.psycopg", ("psycopg",)),
    "asyncpg": ("postgres", "opentelemetry.instrumentation.asyncpg", ("asyncpg",)),
    "mysql": ("mariadb", "opentelemetry.instrumentation.pymysql", ("pymysql",)),
}


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _need_packages(route: str) -> None:
    scope = ROUTES[route][1]
    packages = (*ROUTES[route][2], scope)
    if not _installed(*packages):
        pytest.skip(f"{packages} not installed: pip install -e '.[dev,stores]'")


@dataclass
class Run:
    spans: list[ExportedSpan]
    metrics: list[Any]
    served: dict[str, int]  # route -> HTTP status
    output: str


def _store_env(stores: StoreSet) -> dict[str, str]:
    env: dict[str, str] = {}
    if not stores.redis.skip_reason:
        env["STORE_REDIS_PORT"] = str(stores.redis.port)
    if not stores.memcached.skip_reason:
        env["STORE_MEMCACHED_PORT"] = str(stores.memcached.port)
    if not stores.postgres.skip_reason:
        env["STORE_POSTGRES_DSN"] = stores.postgres.extra["dsn"]
    if not stores.mariadb.skip_reason:
        env["STORE_MYSQL_PORT"] = str(stores.mariadb.port)
    return env


def _serve(stores: StoreSet, routes: list[str], **extra_env: str) -> Run:
    """Run the service, GET each route once, stop it (flush at exit), return what arrived."""
    if not _installed("fastapi", "uvicorn"):
        pytest.skip("fastapi/uvicorn not installed")
    env = _store_env(stores)
    routes = [r for r in routes if _installed(*ROUTES[r][2]) and f"STORE_{_env_key(r)}" in env]
    with OtlpReceiver("http") as receiver:
        port = free_port()
        with start_process(
            [sys.executable, str(APP), str(port)], {**otel_env(receiver), **env, **extra_env}
        ) as server:
            wait_http(f"http://127.0.0.1:{port}/status", server)
            served = {r: http_get(f"http://127.0.0.1:{port}/{r}", timeout=10)[0] for r in routes}
            # the periodic reader exports every 300 ms (otel_env): wait for the DB metrics
            if any(v == 200 for v in served.values()):
                time.sleep(0.8)
        # SIGTERM: uvicorn stops and init()'s exit hook flushes the rest
        receiver.wait_for(lambda r: len(r.spans()) >= len(served), timeout=10)
        return Run(receiver.spans(), receiver.metrics(), served, server.output)


def _env_key(route: str) -> str:
    return {
        "redis": "REDIS_PORT",
        "memcached": "MEMCACHED_PORT",
        "psycopg": "POSTGRES_DSN",
        "asyncpg": "POSTGRES_DSN",
        "mysql": "MYSQL_PORT",
    }[route]


@pytest.fixture(scope="module")
def stores_run(datastores: StoreSet) -> Iterator[Run]:  # noqa: F811
    yield _serve(datastores, list(ROUTES))


def _request_span(run: Run, route: str) -> ExportedSpan:
    servers = [
        s for s in run.spans if s.kind == "SERVER" and s.attributes.get("http.route") == f"/{route}"
    ]
    assert len(servers) == 1, f"{route}: {[(s.name, s.kind) for s in run.spans]}\n{run.output}"
    return servers[0]


@pytest.mark.parametrize("route", list(ROUTES))
def test_store_spans_are_under_the_request_span(
    route: str,
    stores_run: Run,
    datastores: StoreSet,  # noqa: F811
) -> None:
    """A request that uses the store is one trace: the DB client spans are children of the request span."""
    getattr(datastores, ROUTES[route][0]).require()
    _need_packages(route)
    assert stores_run.served.get(route) == 200, stores_run.output
    request = _request_span(stores_run, route)
    scope = ROUTES[route][1]
    db_spans = [s for s in stores_run.spans if s.scope == scope]
    assert db_spans, f"no {scope} span; got {[(s.name, s.scope) for s in stores_run.spans]}"
    by_id = {s.span_id: s for s in stores_run.spans}
    for span in db_spans:
        assert span.kind == "CLIENT"
        assert span.trace_id == request.trace_id
        # the parent is the request span itself, or a span inside it (an ASGI send/receive span)
        parent = by_id.get(span.parent_span_id)
        while parent is not None and parent.span_id != request.span_id:
            parent = by_id.get(parent.parent_span_id)
        assert parent is request, f"{span.name} is not under the request span"
        assert span.attributes.get("db.system.name"), span.attributes
        assert span.attributes.get("server.address") == "127.0.0.1", span.attributes


def test_statement_parameters_are_not_captured(
    stores_run: Run,
    datastores: StoreSet,  # noqa: F811
) -> None:
    """Every store got the secret as a bound parameter/value; no span attribute carries it."""
    assert any(code == 200 for code in stores_run.served.values()), "no store available"
    statements = [
        s.attributes["db.query.text"] for s in stores_run.spans if "db.query.text" in s.attributes
    ]
    assert statements, "no db.query.text recorded at all"
    dumped = json.dumps([s.attributes for s in stores_run.spans], default=str)
    assert SECRET not in dumped
    assert not any(
        k.startswith("db.query.parameter") for s in stores_run.spans for k in s.attributes
    )


def test_client_duration_metrics_are_recorded(
    stores_run: Run,
    datastores: StoreSet,  # noqa: F811
) -> None:
    """The DB-API instrumentations (psycopg, pymysql) emit db.client.operation.duration, one point per store."""
    emitting = {"psycopg": "postgresql", "mysql": "mysql"}
    checked = [r for r in emitting if stores_run.served.get(r) == 200]
    if not checked:
        pytest.skip("neither PostgreSQL nor MariaDB ran here")
    points = [p for p in stores_run.metrics if p.name == "db.client.operation.duration"]
    for route in checked:
        system = emitting[route]
        mine = [p for p in points if p.attributes.get("db.system.name") == system]
        assert mine, (
            f"no db.client.operation.duration for {system}: {sorted({p.name for p in stores_run.metrics})}"
        )
        assert max(p.count or 0 for p in mine) >= 1
        assert all(p.unit == "s" and p.type == "histogram" for p in mine)
        assert SECRET not in json.dumps([p.attributes for p in mine])


def test_disabled_instrumentations_turn_redis_off(datastores: StoreSet) -> None:  # noqa: F811
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=redis: the request span arrives, no Redis span; Memcached still traced."""
    datastores.redis.require()
    _need_packages("redis")
    run = _serve(datastores, ["redis", "memcached"], OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="redis")
    assert run.served["redis"] == 200, run.output
    _request_span(run, "redis")
    assert not [s for s in run.spans if s.scope == ROUTES["redis"][1]]
    if run.served.get("memcached") == 200 and _installed(
        "opentelemetry.instrumentation.pymemcache"
    ):
        assert [s for s in run.spans if s.scope == ROUTES["memcached"][1]]


def test_doctor_lists_each_instrumentation_and_its_state() -> None:
    """`platform-otel doctor --json` names every installed instrumentation and what init() does with it."""

    def doctor(**env: str) -> dict[str, str]:
        report = doctor_report(env)
        return {i["name"]: i["state"] for i in report["instrumentations"]}

    states = doctor()
    assert states["fastapi"].startswith("skipped: covered by platform-otel's own")
    if _installed("redis", "opentelemetry.instrumentation.redis"):
        assert states["redis"].startswith("will be enabled (redis ")
        off = doctor(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="redis")
        assert off["redis"] == "skipped: disabled by configuration"
        assert off["fastapi"] == states["fastapi"]


def test_store_telemetry_names_are_documented(stores_run: Run) -> None:
    """Every span name, span attribute, metric and metric attribute the stores produced is in docs/telemetry.md."""
    db_spans = [s for s in stores_run.spans if s.kind == "CLIENT"]
    if not db_spans:
        pytest.skip("no store ran here")
    assert_documented({k for s in db_spans for k in s.attributes})
    assert_span_names_documented([(s.name, s.attributes) for s in db_spans])
    db_points = [p for p in stores_run.metrics if p.name.startswith("db.")]
    assert_documented({p.name for p in db_points} | {k for p in db_points for k in p.attributes})
