"""Document pipeline service.

``POST /documents`` accepts a document and puts it on an in-process queue; a
worker takes documents off the queue and calls the ``convert_document`` tool
of an MCP server (``converter_server.py``, a separate process over stdio), then
records the result (``GET /documents/{id}``). A converted document is then
summarized by an LLM (``summarize`` stage, a streamed Ollama ``generate``): a real
Ollama at ``OLLAMA_HOST`` when one answers and has the model (``DOC_PIPELINE_MODEL``,
default ``llama3.2:1b``), else the simulated Ollama that ships with platform-otel;
``GET /healthz`` and the service log say which.

Telemetry uses only the public API: ``platform_otel.init()`` and
``platform_otel.pipeline(...)``. One document is one trace: the HTTP request,
the ``enqueue`` stage, the worker's ``convert`` stage (continued from the
context stored with the queued job), the MCP client call, the MCP server's
span in the converter process and the tool's own span.

Document status lives in Redis when ``DOC_PIPELINE_REDIS_URL`` is set (``run_demo.py``
starts a ``redis-server`` when one is installed), so each document's trace also shows
the Redis client spans, from the ``opentelemetry-instrumentation-redis`` package that
``init()`` enables (``pip install "platform-otel[redis]"``). Without it the status is
kept in memory and the service says so once at start.

Run: ``uvicorn app:app --app-dir examples/doc_pipeline`` (see README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import platform_otel

platform_otel.init(service_name="doc-pipeline")

from fastapi import FastAPI, HTTPException  # noqa: E402 - after init(), as the docs recommend
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from ollama import AsyncClient  # noqa: E402
from opentelemetry import trace  # noqa: E402
from pydantic import BaseModel  # noqa: E402

log = logging.getLogger("doc_pipeline")
pipe = platform_otel.pipeline("document-ingest")
CONVERTER = Path(__file__).resolve().with_name("converter_server.py")


class MemoryStatus:
    """Document status in this process: the fallback when there is no Redis."""

    kind = "memory"

    def __init__(self) -> None:
        self._data: dict[str, dict[str, str]] = {}

    async def put(self, doc_id: str, fields: dict[str, str]) -> None:
        self._data.setdefault(doc_id, {}).update(fields)

    async def get(self, doc_id: str) -> dict[str, str] | None:
        return self._data.get(doc_id)

    async def close(self) -> None:
        pass


class RedisStatus:
    """Document status in a Redis hash per document (``doc:<id>``), shared by every worker."""

    kind = "redis"

    def __init__(self, client: Any) -> None:
        self._redis = client

    async def put(self, doc_id: str, fields: dict[str, str]) -> None:
        await self._redis.hset(f"doc:{doc_id}", mapping=fields)

    async def get(self, doc_id: str) -> dict[str, str] | None:
        raw = await self._redis.hgetall(f"doc:{doc_id}")
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def close(self) -> None:
        close = getattr(self._redis, "aclose", None) or self._redis.close  # redis < 5: close()
        await close()


async def _status_store() -> MemoryStatus | RedisStatus:
    url = os.environ.get("DOC_PIPELINE_REDIS_URL")
    if url:
        try:
            import redis.asyncio as redis_asyncio

            client = redis_asyncio.Redis.from_url(url)
            await client.ping()
            log.info("document status kept in Redis at %s", url)
            return RedisStatus(client)
        except Exception as exc:
            log.warning("Redis at %s not usable (%r): document status kept in memory", url, exc)
    else:
        log.info("document status kept in memory (set DOC_PIPELINE_REDIS_URL to use Redis)")
    return MemoryStatus()


class Document(BaseModel):
    name: str
    text: str


MODEL = os.environ.get("DOC_PIPELINE_MODEL", "llama3.2:1b")


def _real_ollama_has(url: str, model: str) -> bool:
    """Whether an Ollama answers at ``url`` and has ``model`` (a 1 s probe, no retries)."""
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=1.0) as response:
            names = {m.get("name") for m in json.loads(response.read()).get("models", [])}
    except (OSError, ValueError):
        return False
    return model in names or f"{model}:latest" in names


@contextlib.contextmanager
def llm_backend() -> Any:
    """(url, description): a real Ollama when one answers with the model, else the simulated one."""
    host = os.environ.get("OLLAMA_HOST") or "127.0.0.1:11434"
    url = host if "://" in host else f"http://{host}"
    if _real_ollama_has(url, MODEL):
        yield url, f"real Ollama at {url}, model {MODEL}"
        return
    from platform_otel._ollama_sim import SimulatedOllama

    with SimulatedOllama(latency_s=0.15, chunks=16, load_s=0.3) as sim:
        yield (
            sim.url,
            f"simulated Ollama at {sim.url} (no Ollama with {MODEL} at {url}), model {MODEL}",
        )


async def _summarize(llm: AsyncClient, doc_id: str, markdown: str) -> str:
    """One ``summarize`` stage: a streamed generate call (its span is the stage's child)."""
    async with pipe.stage("summarize", item_id=doc_id):
        stream = await llm.generate(
            model=MODEL,
            prompt=f"Summarize in one sentence:\n\n{markdown[:4000]}",
            stream=True,
            options={"num_predict": 48, "temperature": 0},
        )
        return "".join([chunk.response or "" async for chunk in stream]).strip()


def _is_error(result: Any) -> bool:
    return bool(getattr(result, "isError", None) or getattr(result, "is_error", None))


async def _worker(
    session: ClientSession,
    llm: AsyncClient,
    queue: asyncio.Queue[dict[str, Any]],
    results: MemoryStatus | RedisStatus,
) -> None:
    """Convert queued documents one by one; each run is one ``convert`` stage."""
    while True:
        job = await queue.get()
        doc_id = job["id"]
        try:
            # carrier= continues the trace of the request that enqueued the job and records lag.
            async with pipe.stage("convert", item_id=doc_id, carrier=job["carrier"]) as run:
                result = await session.call_tool(
                    "convert_document", {"name": job["name"], "text": job["text"]}
                )
                text = result.content[0].text if result.content else ""
                if _is_error(result):
                    run.set_outcome("failure")
                    outcome = {"status": "failed", "error": text}
                else:
                    summary = await _summarize(llm, doc_id, text)
                    outcome = {"status": "done", "markdown": text, "summary": summary}
                await results.put(doc_id, outcome)
                log.info("document %s %s", doc_id, outcome["status"])
        except Exception as exc:  # the stage has recorded outcome=failure; keep the worker alive
            with contextlib.suppress(Exception):
                await results.put(doc_id, {"status": "failed", "error": repr(exc)})
        finally:
            queue.task_done()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The converter inherits this environment, so its OTLP settings match ours.
    params = StdioServerParameters(
        command=sys.executable, args=[str(CONVERTER)], env=dict(os.environ)
    )
    async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        app.state.queue = queue
        app.state.results = results = await _status_store()
        gauge = pipe.observe_queue("pending", depth=queue.qsize)
        with llm_backend() as (llm_url, llm_description):
            app.state.llm = llm_description
            log.info("LLM step: %s", llm_description)
            llm = AsyncClient(host=llm_url)
            task = asyncio.create_task(_worker(session, llm, queue, results))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                gauge.unregister()
                await results.close()


app = FastAPI(title="doc-pipeline", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "llm": getattr(app.state, "llm", "")}


@app.post("/documents", status_code=202)
async def submit(doc: Document) -> dict[str, str]:
    """Enqueue a document; the response names its id and the trace that follows it."""
    doc_id = uuid.uuid4().hex[:12]
    with pipe.stage("enqueue", item_id=doc_id):
        carrier = pipe.inject()  # trace context + enqueue time travel with the job
        await app.state.results.put(doc_id, {"status": "queued", "name": doc.name})
        await app.state.queue.put(
            {"id": doc_id, "name": doc.name, "text": doc.text, "carrier": carrier}
        )
        # Inside the stage: the record carries this document's trace id (on stderr and over OTLP);
        # extra= keys become attributes of the OTLP log record.
        log.info("document %s queued: %s", doc_id, doc.name, extra={"doc.name": doc.name})
    trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
    return {"id": doc_id, "trace_id": trace_id}


@app.get("/documents/{doc_id}")
async def status(doc_id: str) -> dict[str, Any]:
    found = await app.state.results.get(doc_id)
    if found is None:
        raise HTTPException(status_code=404, detail="unknown document")
    return {"id": doc_id, **found}
