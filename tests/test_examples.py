"""The small examples in examples/ run from a clean checkout and do what their READMEs say.

Each ``examples/<name>/run.py`` runs once (module-scoped fixture) as a user would run
it, with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a real OTLP receiver; the tests
then check its output and what arrived at the receiver. The meta-tests keep every
example directory documented and exercised.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.support.fixtures import REPO_ROOT, child_env, otel_env
from tests.support.otlp_receiver import ExportedSpan, OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXAMPLES = REPO_ROOT / "examples"


@dataclass
class ExampleRun:
    """One run of an example's ``run.py`` and everything its processes exported."""

    rc: int
    stdout: str
    stderr: str
    receiver: OtlpReceiver

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def spans(self, service: str | None = None) -> list[ExportedSpan]:
        return [
            s
            for s in self.receiver.spans()
            if service is None or s.resource.get("service.name") == service
        ]


def _run_example(
    name: str, *, protocol: Literal["grpc", "http"] = "grpc", timeout: float = 60.0
) -> Iterator[ExampleRun]:
    """Run ``examples/<name>/run.py`` against a fresh OTLP receiver speaking ``protocol``.

    The multi-process examples run with ``http/protobuf``, so the test also shows that
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` reaches every process they start.
    """
    receiver = OtlpReceiver(protocol).start()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name / "run.py")],
            env=child_env(otel_env(receiver)),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its servers and workers too are killed on a timeout
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"examples/{name}/run.py ran over {timeout} s\n{out}\n{err}")
        run = ExampleRun(proc.returncode, out, err, receiver)
        assert run.rc == 0, str(run)
        yield run
    finally:
        receiver.stop()


# --------------------------------------------------------------------------- fastapi_service


@pytest.fixture(scope="module")
def fastapi_run() -> Iterator[ExampleRun]:
    pytest.importorskip("fastapi", reason="platform-otel[fastapi] is not installed")
    pytest.importorskip("uvicorn", reason="platform-otel[fastapi] is not installed")
    pytest.importorskip("httpx", reason="httpx is not installed")
    yield from _run_example("fastapi_service")


def test_fastapi_service_call_out_joins_the_request_trace(fastapi_run: ExampleRun) -> None:
    """Each printed trace: GET /hello/{name} -> httpx GET (CLIENT) -> GET /greeting, parent to child."""
    printed = set(re.findall(r"worker pid .* trace_id ([0-9a-f]{32})", fastapi_run.stdout))
    assert len(printed) >= 8, str(fastapi_run)

    def complete(r: OtlpReceiver) -> bool:
        return printed <= {s.trace_id for s in r.spans() if s.name == "GET /greeting"}

    fastapi_run.receiver.wait_for(complete, 10)
    spans = fastapi_run.spans("fastapi-example")
    for trace_id in printed:
        in_trace = {s.name: s for s in spans if s.trace_id == trace_id}
        assert set(in_trace) == {"GET /hello/{name}", "GET", "GET /greeting"}, in_trace
        outer, call, inner = (
            in_trace["GET /hello/{name}"],
            in_trace["GET"],
            in_trace["GET /greeting"],
        )
        assert (outer.kind, call.kind, inner.kind) == ("SERVER", "CLIENT", "SERVER")
        assert outer.parent_span_id == ""
        assert call.parent_span_id == outer.span_id
        assert inner.parent_span_id == call.span_id


def test_fastapi_service_each_worker_has_its_own_instance_id(fastapi_run: ExampleRun) -> None:
    """Two uvicorn workers answered, each under its own service.instance.id, as printed."""
    printed = set(re.findall(r"service\.instance\.id (\S+)", fastapi_run.stdout))
    assert "2 worker(s) answered" in fastapi_run.stdout, str(fastapi_run)
    spans = [s for s in fastapi_run.spans("fastapi-example") if s.kind == "SERVER"]
    exported = {s.resource["service.instance.id"] for s in spans}
    assert exported == printed and len(printed) == 2, (exported, printed)
    assert len({s.resource["process.pid"] for s in spans}) == 2
    points = [p for p in fastapi_run.receiver.metrics() if p.name == "http.server.request.duration"]
    assert {p.resource["service.instance.id"] for p in points} == printed


def test_fastapi_service_log_lines_carry_the_trace_id(fastapi_run: ExampleRun) -> None:
    """The printed 'greeted' lines end in their request's ids; the exported records carry them too."""
    printed = re.findall(r"worker pid .* trace_id ([0-9a-f]{32})", fastapi_run.stdout)
    lines = [line for line in fastapi_run.stdout.splitlines() if "greeted" in line]
    assert len(lines) == len(printed) >= 8, str(fastapi_run)
    logged = [re.search(r"trace_id=([0-9a-f]{32}) span_id=[0-9a-f]{16}$", x) for x in lines]
    assert sorted(m.group(1) for m in logged if m) == sorted(printed), lines
    records = [lg for lg in fastapi_run.receiver.logs() if str(lg.body).startswith("greeted")]
    assert sorted(r.trace_id for r in records) == sorted(printed)
    assert all(r.attributes["app.visitor"] in str(r.body) for r in records)
    spans = {s.span_id: s for s in fastapi_run.spans() if s.name == "GET /hello/{name}"}
    assert all(spans[r.span_id].trace_id == r.trace_id for r in records)


def _latest_sum(points: list, *, histogram_sum: bool = False, **attrs: str) -> float:
    """Sum over processes and series of the latest cumulative value (a histogram's count or sum)."""
    latest: dict[tuple[str, str], float] = {}  # per process and series
    for p in sorted(points, key=lambda p: p.time_unix_nano):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            use_count = p.count is not None and not histogram_sum
            series = (p.resource["service.instance.id"], repr(sorted(p.attributes.items())))
            latest[series] = p.count if use_count else p.value
    return sum(latest.values())


# --------------------------------------------------------------------------- queue_worker


@pytest.fixture(scope="module")
def queue_run() -> Iterator[ExampleRun]:
    yield from _run_example("queue_worker", protocol="http")


def _queue_jobs(run: ExampleRun) -> dict[str, tuple[str, str]]:
    """job id -> (outcome, trace id), as printed."""
    rows = re.findall(
        r"^(job-\d+)\s+\S+\s+\d+\s+(\w+)\s+[\d.]+ s\s+([0-9a-f]{32})$", run.stdout, re.M
    )
    return {job: (outcome, trace_id) for job, outcome, trace_id in rows}


def test_queue_worker_each_job_is_one_trace_across_the_queue(queue_run: ExampleRun) -> None:
    """Producer's enqueue stage -> worker's render stage (CONSUMER, another process) -> its own span."""
    jobs = _queue_jobs(queue_run)
    assert len(jobs) == 12 and len({t for _, t in jobs.values()}) == 12, str(queue_run)
    assert sorted(o for o, _ in jobs.values()) == ["failure", "skipped"] + ["success"] * 10
    for outcome, trace_id in jobs.values():
        spans = {s.name: s for s in queue_run.spans() if s.trace_id == trace_id}
        enqueue, stage = spans["thumbnails enqueue"], spans["thumbnails render"]
        assert enqueue.resource["service.name"] == "queue-producer"
        assert stage.resource["service.name"] == "queue-worker"
        assert stage.resource["process.pid"] != enqueue.resource["process.pid"]
        assert stage.kind == "CONSUMER" and stage.parent_span_id == enqueue.span_id
        if outcome == "skipped":
            assert set(spans) == {"thumbnails enqueue", "thumbnails render"}
            continue
        work = spans["render thumbnail"]
        assert work.parent_span_id == stage.span_id and work.scope == "example.queue_worker"
        if outcome == "failure":
            assert stage.status_code == 2 and stage.attributes["error.type"] == "ValueError"
    records = [lg for lg in queue_run.receiver.logs() if str(lg.body).startswith("rendered")]
    by_job = {lg.attributes["app.job_id"]: lg.trace_id for lg in records}
    assert by_job == {j: t for j, (o, t) in jobs.items() if o == "success"}


def test_queue_worker_pipeline_metrics(queue_run: ExampleRun) -> None:
    """Items by outcome, lag per job and a non-zero queue depth reach the OTLP endpoint."""
    points = queue_run.receiver.metrics()
    items = [p for p in points if p.name == "pipeline.items"]
    render = {"pipeline": "thumbnails", "stage": "render"}
    assert _latest_sum(items, **render, outcome="success") == 10
    assert _latest_sum(items, **render, outcome="failure") == 1
    assert _latest_sum(items, **render, outcome="skipped") == 1
    assert _latest_sum(items, pipeline="thumbnails", stage="enqueue", outcome="success") == 12
    lag = [p for p in points if p.name == "pipeline.lag"]
    assert _latest_sum(lag, **render) == 12
    assert all(p.resource["service.name"] == "queue-worker" for p in lag)
    # The lag comes from the enqueue time in the headers: it matches the waits printed per job.
    waits = [float(w) for w in re.findall(r"\s([\d.]+) s\s", queue_run.stdout)]
    assert len(waits) == 12
    assert _latest_sum(lag, histogram_sum=True, **render) == pytest.approx(sum(waits), abs=0.2)
    depth = [p for p in points if p.name == "pipeline.queue.depth"]
    assert {p.attributes["queue"] for p in depth} == {"jobs"}
    assert max(p.value or 0 for p in depth) > 0, depth
    assert "queue depth now 12" in queue_run.stdout


# --------------------------------------------------------------------------- mcp_tools


@pytest.fixture(scope="module")
def mcp_run() -> Iterator[ExampleRun]:
    pytest.importorskip("mcp", reason="platform-otel[mcp] is not installed")
    yield from _run_example("mcp_tools", protocol="http")


def test_mcp_tools_trace_joins_client_and_server_processes(mcp_run: ExampleRun) -> None:
    """Every tool call's server span (server process) is a child of its client span (client process)."""
    (trace_id,) = re.findall(
        r"one trace for the whole conversation: trace_id ([0-9a-f]{32})", mcp_run.stdout
    )
    spans = [s for s in mcp_run.spans() if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent_span_id == ""]
    assert root.name == "answer questions" and root.resource["service.name"] == "mcp-client"
    servers = [s for s in spans if s.kind == "SERVER" and "tools/call" in s.name]
    assert sorted(s.name for s in servers) == [
        "tools/call capital_of",
        "tools/call capital_of",
        "tools/call word_count",
    ]
    for server in servers:
        client = by_id[server.parent_span_id]
        assert client.kind == "CLIENT" and client.name.endswith(server.name)
        assert client.resource["service.name"] == "mcp-client"
        assert server.resource["service.name"] == "mcp-tool-server"
        assert server.resource["process.pid"] != client.resource["process.pid"]
    failed = [s for s in servers if s.status_code == 2]
    assert len(failed) == 1 and failed[0].name == "tools/call capital_of"
    assert failed[0].attributes.get("error.type") == "tool_error"
    printed = re.findall(r"^\s+(.+?)  \[CLIENT\]$", mcp_run.stdout, re.M)
    assert sorted(printed) == sorted(s.name for s in spans if s.kind == "CLIENT")
    (count,) = [s for s in spans if s.name == "count words"]
    assert by_id[count.parent_span_id].name == "tools/call word_count"
    assert count.attributes["app.words"] == 9


def test_mcp_tools_server_logs_carry_the_client_trace(mcp_run: ExampleRun) -> None:
    """The tool's log records, written in the server process, carry the client's trace id."""
    (trace_id,) = re.findall(r"trace_id ([0-9a-f]{32})", mcp_run.stdout)
    records = [
        lg for lg in mcp_run.receiver.logs() if lg.resource["service.name"] == "mcp-tool-server"
    ]
    mine = {str(lg.body): lg for lg in records if lg.scope.startswith("example.")}
    assert set(mine) == {"counted 9 words", "no capital known for Atlantis"}, records
    assert {lg.trace_id for lg in mine.values()} == {trace_id}
    assert mine["no capital known for Atlantis"].attributes["app.country"] == "Atlantis"
    assert "Nairobi" in mcp_run.stdout and "[tool error]" in mcp_run.stdout
    points = [p for p in mcp_run.receiver.metrics() if p.name.startswith("mcp.")]
    for side, service in (("client", "mcp-client"), ("server", "mcp-tool-server")):
        calls = [
            p
            for p in points
            if p.name == f"mcp.{side}.operation.duration"
            and p.attributes.get("mcp.method.name") == "tools/call"
        ]
        assert {p.resource["service.name"] for p in calls} == {service}
        per_tool = {
            tool: _latest_sum(calls, **{"gen_ai.tool.name": tool})
            for tool in ("word_count", "capital_of")
        }
        assert per_tool == {"word_count": 1, "capital_of": 2}, (side, per_tool)


# --------------------------------------------------------------------------- structured_logs


@pytest.fixture(scope="module")
def logs_run() -> Iterator[ExampleRun]:
    pytest.importorskip("structlog", reason="platform-otel[structlog] is not installed")
    pytest.importorskip("loguru", reason="platform-otel[loguru] is not installed")
    yield from _run_example("structured_logs")


def test_structured_logs_every_line_carries_the_span_ids(logs_run: ExampleRun) -> None:
    """The stdlib and structlog lines stay valid JSON with the ids as fields; loguru prints them."""
    ((trace_id, span_id),) = re.findall(
        r"trace_id ([0-9a-f]{32}) span_id ([0-9a-f]{16})", logs_run.stdout
    )
    lines = [line for line in logs_run.stdout.splitlines() if "order paid" in line]
    assert len(lines) == 3, str(logs_run)
    stdlib, structlog_, loguru = lines
    for line in (stdlib, structlog_):
        fields = json.loads(line)
        assert (fields["trace_id"], fields["span_id"]) == (trace_id, span_id), line
    assert json.loads(stdlib)["order"] == "A-1001"
    assert json.loads(structlog_)["app.order_id"] == "A-1001"
    assert loguru.endswith(f"trace_id={trace_id} span_id={span_id}"), loguru


def test_structured_logs_each_record_is_exported_once_with_the_ids(logs_run: ExampleRun) -> None:
    """Three records (stdlib, structlog, loguru), each once, in the span, with app.order_id."""
    ((trace_id, span_id),) = re.findall(
        r"trace_id ([0-9a-f]{32}) span_id ([0-9a-f]{16})", logs_run.stdout
    )
    records = [lg for lg in logs_run.receiver.logs() if lg.body == "order paid"]
    assert len(records) == 3, records
    assert {(lg.trace_id, lg.span_id) for lg in records} == {(trace_id, span_id)}
    assert [lg.attributes.get("app.order_id") for lg in records] == ["A-1001"] * 3
    assert sum(lg.scope == "example.structured_logs" for lg in records) == 2  # stdlib, structlog
    (span,) = [s for s in logs_run.spans() if s.name == "pay order"]
    assert (span.trace_id, span.span_id) == (trace_id, span_id)


# --------------------------------------------------------------------------- meta

COMMANDS = ("python", "python3", "uvicorn", "gunicorn", "bash", "platform-otel")
ENTRY_POINTS = ("run.py", "run_demo.py")


def _example_dirs() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _command_lines(readme: str) -> list[str]:
    """Command lines of the README's code blocks (a leading ``$ `` allowed), continuation lines joined."""
    lines: list[str] = []
    in_block = False
    for raw in readme.replace("\\\n", " ").splitlines():
        if raw.lstrip().startswith("```"):
            in_block = not in_block
            continue
        line = raw.strip().removeprefix("$ ")
        if in_block and line.split(" ", 1)[0] in COMMANDS:
            lines.append(line)
    return lines


def test_every_example_has_a_readme_and_an_entry_point_run_by_a_test() -> None:
    """Each examples/<name>/ has a README.md, a run.py (or run_demo.py) that some test runs, and a
    line in the README.md's Examples table."""
    tests_text = "\n".join(
        p.read_text(encoding="utf-8") for p in (REPO_ROOT / "tests").rglob("*.py")
    )
    dirs = _example_dirs()
    top_readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert {"fastapi_service", "queue_worker", "mcp_tools", "structured_logs"} <= {
        d.name for d in dirs
    }
    for example in dirs:
        assert (example / "README.md").is_file(), f"{example.name}: no README.md"
        entries = [e for e in ENTRY_POINTS if (example / e).is_file()]
        assert entries, f"{example.name}: no {' or '.join(ENTRY_POINTS)}"
        assert f'"{example.name}"' in tests_text, f"no test runs examples/{example.name}"
        assert any(f'"{entry}"' in tests_text for entry in entries), example.name
        assert f"(examples/{example.name})" in top_readme, f"README.md does not list {example.name}"
        readme = (example / "README.md").read_text(encoding="utf-8")
        assert any(
            f"examples/{example.name}/{entry}" in line
            for line in _command_lines(readme)
            for entry in entries
        ), f"examples/{example.name}/README.md does not show how to run it"


@pytest.mark.parametrize("example", [d.name for d in _example_dirs()])
def test_readme_commands_and_links_point_at_files_that_exist(example: str) -> None:
    """Paths in the README's command lines, and its relative links, exist in the checkout."""
    readme_path = EXAMPLES / example / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    missing: list[str] = []
    for line in _command_lines(readme):
        words = line.split()
        app_dir = words[words.index("--app-dir") + 1] if "--app-dir" in words else None
        for word in words:
            word = word.strip("'\"")
            if word.startswith(("examples/", "scripts/", "collector/")) or word.endswith(
                (".py", ".sh", ".yaml")
            ):
                if not (REPO_ROOT / word).exists():
                    missing.append(f"{line!r}: {word}")
            elif (
                app_dir
                and re.fullmatch(r"\w+:\w+", word)  # uvicorn module:attribute
                and not (REPO_ROOT / app_dir / f"{word.split(':')[0]}.py").is_file()
            ):
                missing.append(f"{line!r}: {word} in {app_dir}")
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if "://" in target or target.startswith("#"):
            continue
        if not (readme_path.parent / target.split("#", 1)[0]).resolve().exists():
            missing.append(f"link {target}")
    assert not missing, missing
