"""The flagship example (examples/doc_pipeline) runs end to end and traces each document as one trace."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.documented import assert_documented
from tests.support.fixtures import run_demo

pytest.importorskip("fastapi", reason="the example is a FastAPI service")
pytest.importorskip("uvicorn", reason="the example is served by uvicorn")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def summary(demo_summary: dict[str, Any]) -> dict[str, Any]:
    return demo_summary


def _one(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [s["name"] for s in spans])
    return found[0]


def test_each_document_is_one_trace_from_http_request_to_mcp_tool(summary: dict[str, Any]) -> None:
    """HTTP request -> enqueue -> worker stage -> MCP client -> MCP server tool: one parent chain, one trace."""
    docs = summary["documents"]
    assert [d["status"] for d in docs] == ["done", "done", "failed"]
    assert len({d["trace_id"] for d in docs}) == len(docs)  # one trace per document
    for doc in docs:
        spans = doc["spans"]
        assert doc["problems"] == []
        by_id = {s["span_id"]: s for s in spans}
        roots = [s for s in spans if s["parent_span_id"] not in by_id]
        assert [r["name"] for r in roots] == ["POST /documents"]
        http = roots[0]
        enqueue = _one(spans, name="document-ingest enqueue")
        convert = _one(spans, name="document-ingest convert")
        (client,) = [
            s
            for s in spans
            if s["kind"] == "CLIENT" and s["name"].endswith("tools/call convert_document")
        ]
        server = _one(spans, kind="SERVER", name="tools/call convert_document")
        assert enqueue["parent_span_id"] == http["span_id"]
        assert convert["parent_span_id"] == enqueue["span_id"]
        assert client["parent_span_id"] == convert["span_id"]
        assert server["parent_span_id"] == client["span_id"]
        assert (client["service"], server["service"]) == ("doc-pipeline", "doc-converter")
        if doc["status"] == "done":
            assert _one(spans, name="render markdown")["parent_span_id"] == server["span_id"]
        else:
            assert server["error.type"] == "tool_error"


def test_no_duplicate_spans_in_document_traces(summary: dict[str, Any]) -> None:
    """No span is emitted twice for the same document (e.g. double MCP or HTTP instrumentation).

    The status store is written twice per document (queued, then done/failed): its client
    spans count once per parent stage.
    """
    for doc in summary["documents"]:
        counts = Counter(
            (s["name"], s["kind"], s["service"])
            + ((s["parent_span_id"],) if s.get("db.system.name") else ())
            for s in doc["spans"]
        )
        assert all(n == 1 for n in counts.values()), counts


def test_document_status_writes_are_redis_spans_in_the_document_trace(
    summary: dict[str, Any],
) -> None:
    """With redis-server installed, the status writes are Redis client spans under the enqueue and convert stages."""
    if summary.get("status_store") != "redis":
        pytest.skip("redis-server or platform-otel[redis] not installed: status kept in memory")
    for doc in summary["documents"]:
        by_id = {s["span_id"]: s for s in doc["spans"]}
        redis_spans = [s for s in doc["spans"] if s.get("db.system.name") == "redis"]
        parents = sorted(by_id[s["parent_span_id"]]["name"] for s in redis_spans)
        assert parents == ["document-ingest convert", "document-ingest enqueue"], parents
        assert all(s["kind"] == "CLIENT" and s["service"] == "doc-pipeline" for s in redis_spans)


def test_without_redis_the_example_keeps_status_in_memory() -> None:
    """On a laptop without Redis the demo still runs end to end (status in memory, no Redis spans)."""
    summary = run_demo("--no-redis")
    assert summary["status_store"] == "memory"
    assert [d["status"] for d in summary["documents"]] == ["done", "done", "failed"]
    assert not [s for d in summary["documents"] for s in d["spans"] if s.get("db.system.name")]


def test_example_span_names_are_documented(summary: dict[str, Any]) -> None:
    """The MCP span names the example produces match documented patterns."""
    names = set()
    for doc in summary["documents"]:
        for s in doc["spans"]:
            if "tools/" in s["name"]:
                name = s["name"].replace("convert_document", "{target}")
                names.add(
                    name.replace("tools/call", "{mcp.method.name}").replace(
                        "tools/list", "{mcp.method.name}"
                    )
                )
    assert_documented(names)


def _series(summary: dict[str, Any], name: str, **attributes: Any) -> list[dict[str, Any]]:
    return [
        m
        for m in summary["metrics"]
        if m["name"] == name and all(m["attributes"].get(k) == v for k, v in attributes.items())
    ]


def test_pipeline_metrics_arrive_over_otlp_with_exact_counts(summary: dict[str, Any]) -> None:
    """pipeline_items_total counts each document once per stage and outcome; durations and lag are recorded."""
    items = {
        (m["attributes"]["stage"], m["attributes"]["outcome"]): m["value"]
        for m in _series(summary, "pipeline.items", pipeline="document-ingest")
    }
    assert items == {
        ("enqueue", "success"): 3,
        ("convert", "success"): 2,
        ("convert", "failure"): 1,
        ("summarize", "success"): 2,  # the LLM step, for each converted document
    }
    assert {m["prometheus"] for m in _series(summary, "pipeline.items")} == {"pipeline_items_total"}
    durations = {
        (m["attributes"]["stage"], m["attributes"]["outcome"]): m["count"]
        for m in _series(summary, "pipeline.stage.duration")
    }
    assert durations == items
    (lag,) = _series(summary, "pipeline.lag", stage="convert")
    assert lag["count"] == 3 and lag["sum"] > 0
    (depth,) = _series(summary, "pipeline.queue.depth", queue="pending")
    assert depth["value"] == 0  # every document was taken off the queue


def test_http_and_mcp_metrics_arrive_over_otlp(summary: dict[str, Any]) -> None:
    """The HTTP server and MCP client/server duration histograms count each request once."""
    (posts,) = _series(
        summary,
        "http.server.request.duration",
        **{"http.request.method": "POST", "http.route": "/documents"},
    )
    assert posts["attributes"]["http.response.status_code"] == 202 and posts["count"] == 3
    for side, service in (("client", "doc-pipeline"), ("server", "doc-converter")):
        calls = _series(
            summary, f"mcp.{side}.operation.duration", **{"mcp.method.name": "tools/call"}
        )
        assert {m["service"] for m in calls} == {service}
        by_error = {m["attributes"].get("error.type"): m["count"] for m in calls}
        assert by_error == {None: 2, "tool_error": 1}, (side, by_error)


def test_log_records_carry_their_documents_trace_id(summary: dict[str, Any]) -> None:
    """Log lines written inside a document's stages arrive over OTLP with that document's trace id."""
    for doc in summary["documents"]:
        mine = [r for r in summary["logs"] if r["trace_id"] == doc["trace_id"]]
        pipeline = [r["body"] for r in mine if r["service"] == "doc-pipeline"]
        assert f"document {doc['id']} queued: {doc['name']}" in pipeline, pipeline
        assert f"document {doc['id']} {doc['status']}" in pipeline, pipeline
        # The converter logs in its own process, inside the MCP server span of the same trace.
        converter = [r["body"] for r in mine if r["scope"] == "doc_converter"]
        expected = "converted" if doc["status"] == "done" else "rejected"
        assert [b.split()[0] for b in converter] == [expected], converter
        assert all(r["service"] == "doc-converter" for r in mine if r["scope"] == "doc_converter")
        assert all(len(r["span_id"]) == 16 and r["span_id"] != "0" * 16 for r in mine)


def test_converted_documents_are_summarized_by_an_llm_call(summary: dict[str, Any]) -> None:
    """The LLM step: a summarize stage with one Ollama CLIENT span below it per converted document;
    the demo says whether a real or the simulated Ollama answered."""
    assert summary["llm"].startswith(("real Ollama at", "simulated Ollama at")), summary["llm"]
    for doc in summary["documents"]:
        spans = doc["spans"]
        llm = [
            s for s in spans if s["kind"] == "CLIENT" and s["name"].startswith("text_completion ")
        ]
        if doc["status"] != "done":
            assert llm == []
            continue
        stage = _one(spans, name="document-ingest summarize")
        (call,) = llm
        assert call["parent_span_id"] == stage["span_id"]
        assert call["error.type"] is None
