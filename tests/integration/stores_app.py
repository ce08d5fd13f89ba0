"""A FastAPI service using each data store, run by tests/integration/test_datastores.py.

``init()`` is called the way a service calls it; nothing here touches an
instrumentor: the store spans come from the contrib instrumentations installed
beside platform-otel. Store addresses come from ``STORE_*`` variables; a store
without one has no route.
"""

from __future__ import annotations

import os
import sys

import platform_otel

platform_otel.init(service_name="stores-app")

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

SECRET = "secret-param-4711"  # must never appear in telemetry
app = FastAPI()

if os.environ.get("STORE_REDIS_PORT"):
    import redis

    _redis = redis.Redis(host="127.0.0.1", port=int(os.environ["STORE_REDIS_PORT"]))

    @app.get("/redis")
    def use_redis() -> dict[str, str]:
        _redis.set("doc:1:status", SECRET)
        return {"status": (_redis.get("doc:1:status") or b"").decode()}


if os.environ.get("STORE_MEMCACHED_PORT"):
    from pymemcache.client.base import Client

    _memcached = Client(("127.0.0.1", int(os.environ["STORE_MEMCACHED_PORT"])))

    @app.get("/memcached")
    def use_memcached() -> dict[str, str]:
        _memcached.set("doc-1", SECRET)
        return {"value": (_memcached.get("doc-1") or b"").decode()}


if os.environ.get("STORE_POSTGRES_DSN"):
    import asyncpg
    import psycopg

    _dsn = os.environ["STORE_POSTGRES_DSN"]

    @app.get("/psycopg")
    def use_psycopg() -> dict[str, str]:
        with psycopg.connect(_dsn) as conn:
            row = conn.execute("SELECT %s::text AS v", (SECRET,)).fetchone()
        return {"value": str(row[0]) if row else ""}

    @app.get("/asyncpg")
    async def use_asyncpg() -> dict[str, str]:
        conn = await asyncpg.connect(_dsn)
        try:
            value = await conn.fetchval("SELECT $1::text", SECRET)
        finally:
            await conn.close()
        return {"value": str(value)}


if os.environ.get("STORE_MYSQL_PORT"):
    import pymysql

    @app.get("/mysql")
    def use_mysql() -> dict[str, str]:
        conn = pymysql.connect(
            host="127.0.0.1", port=int(os.environ["STORE_MYSQL_PORT"]), user="root"
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT %s", (SECRET,))
                row = cur.fetchone()
        finally:
            conn.close()
        return {"value": str(row[0]) if row else ""}


@app.get("/status")
def status() -> dict[str, object]:
    telemetry = platform_otel.get_telemetry()
    items = getattr(telemetry, "integrations", [])
    return {i.name: [i.active, i.reason] for i in items}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
