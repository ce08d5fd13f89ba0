"""The `platform-otel` command: `run` instruments any command (children too), `doctor` diagnoses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.fixtures import (
    child_env,
    free_port,
    http_get,
    otel_env,
    start_process,
    wait_http,
)
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "platform-otel")

UNINSTRUMENTED_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}
    """
)

PARENT_AND_CHILD = textwrap.dedent(
    """
    import subprocess, sys
    from opentelemetry import trace
    with trace.get_tracer("script").start_as_current_span("parent-work"):
        pass
    code = "from opentelemetry import trace\\nwith trace.get_tracer('script').start_as_current_span('child-work'): pass"
    subprocess.run([sys.executable, "-c", code], check=True)
    """
)


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout, env=child_env(env or {})
    )


def test_run_instruments_a_script_and_its_child_processes(
    otlp_grpc_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """`platform-otel run -- python script.py`: spans of the script and of a Python child it starts arrive."""
    script = tmp_path / "job.py"
    script.write_text(PARENT_AND_CHILD, encoding="utf-8")
    env = otel_env(otlp_grpc_receiver, service_name="cli-job")
    result = _cli("run", "--", sys.executable, str(script), env=env)
    assert result.returncode == 0, result.stderr
    otlp_grpc_receiver.wait_for(
        lambda r: {"parent-work", "child-work"} <= {s.name for s in r.spans()}, timeout=10
    )
    spans = {s.name: s for s in otlp_grpc_receiver.spans()}
    assert spans["parent-work"].resource["service.name"] == "cli-job"
    parent_pid = spans["parent-work"].resource["process.pid"]
    assert spans["child-work"].resource["process.pid"] != parent_pid


def test_run_traces_an_uninstrumented_uvicorn_app(
    otlp_grpc_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """`platform-otel run -- uvicorn app:app` traces a FastAPI app that never calls init()."""
    (tmp_path / "plain_app.py").write_text(UNINSTRUMENTED_APP, encoding="utf-8")
    port = free_port()
    argv = [
        CLI,
        "run",
        "--",
        sys.executable,
        "-m",
        "uvicorn",
        "plain_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-dir",
        str(tmp_path),
    ]
    with start_process(argv, otel_env(otlp_grpc_receiver, service_name="zero-code")) as server:
        wait_http(f"http://127.0.0.1:{port}/items/1", server)
        assert http_get(f"http://127.0.0.1:{port}/items/42")[0] == 200
        otlp_grpc_receiver.wait_for(
            lambda r: any(s.name == "GET /items/{item_id}" for s in r.spans()), timeout=10
        )
    span = next(s for s in otlp_grpc_receiver.spans() if s.name == "GET /items/{item_id}")
    assert span.resource["service.name"] == "zero-code"
    assert span.attributes["http.route"] == "/items/{item_id}"


def test_run_without_command_explains_usage() -> None:
    """`platform-otel run` with no command exits 2 with a usage hint."""
    result = _cli("run")
    assert result.returncode == 2
    assert "platform-otel run -- uvicorn app:app" in result.stderr


def test_doctor_reports_healthy_endpoint_and_integrations(otlp_grpc_receiver: OtlpReceiver) -> None:
    """doctor exits 0 when the endpoint answers, and lists every integration's state."""
    result = _cli("doctor", "--json", env=otel_env(otlp_grpc_receiver, service_name="diag"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["settings"]["service_name"] == "diag"
    assert {e["signal"] for e in report["endpoints"] if e["ok"]} == {"traces", "metrics", "logs"}
    states = {i["name"]: i["state"] for i in report["integrations"]}
    assert states["fastapi"].startswith("will be enabled (fastapi")
    assert set(states) >= {"logging", "fastapi", "httpx", "requests", "mcp", "ollama", "gpu"}


def test_doctor_flags_unreachable_endpoint_and_bad_values() -> None:
    """doctor exits 1 naming the unreachable endpoint and each bad variable."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_METRIC_EXPORT_INTERVAL": "abc",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests",
    }
    result = _cli("doctor", env=env)
    assert result.returncode == 1
    assert "[ERR] traces" in result.stdout and "unreachable" in result.stdout
    assert "OTEL_METRIC_EXPORT_INTERVAL='abc' is invalid" in result.stdout
    assert "requests  disabled by configuration" in result.stdout
