"""``platform-otel monitor`` and the /api/ps residency poller (platform_otel._ollama_ps).

The monitor runs as a real subprocess with the stand-in pynvml first on its path,
polls a real HTTP server answering ``/api/ps``, and exports to a real OTLP receiver.
"""

from __future__ import annotations

import copy
import json
import signal
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from platform_otel import _safety
from platform_otel._ollama_ps import ResidencyPoller
from tests.support.documented import assert_documented
from tests.support.fixtures import doctor_report, free_port, otel_env, start_process
from tests.support.ollama_ps import PsServer
from tests.support.otlp_receiver import OtlpReceiver
from tests.test_gpu import FAKE_PYTHONPATH, GPU0, GPU1, two_gpus

pytestmark = pytest.mark.timeout(60)

GB = 1 << 30
MODELS = [
    {"name": "llama3.2:1b", "model": "llama3.2:1b", "size": 4 * GB, "size_vram": 3 * GB},
    {"name": "nomic-embed-text:latest", "size": GB, "size_vram": GB},
]


def _gauges(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], float]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, object], float]]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    out.setdefault(m.name, []).append((dict(p.attributes or {}), p.value))
    return out


def test_residency_poller_gauges_lookup_and_down() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("t")
    with PsServer(copy.deepcopy(MODELS)) as ps:
        server = {"server.address": "127.0.0.1", "server.port": ps.port}
        poller = ResidencyPoller(ps.url, meter, interval_s=0.05)
        poller.start()
        try:
            deadline = time.monotonic() + 5
            while poller.lookup("llama3.2:1b") is None:  # the contract: polled after start()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert poller.lookup("llama3.2:1b") == 0.75
            assert poller.lookup("nomic-embed-text") == 1.0  # ":latest" implied
            assert poller.lookup("mistral") is None  # not loaded
            gauges = _gauges(reader)
            assert gauges["ollama.model.vram.ratio"] == [
                ({**server, "gen_ai.request.model": "llama3.2:1b"}, 0.75),
                ({**server, "gen_ai.request.model": "nomic-embed-text:latest"}, 1.0),
            ]
            assert [v for _a, v in gauges["ollama.model.size"]] == [4 * GB, GB]
            assert [v for _a, v in gauges["ollama.model.vram.size"]] == [3 * GB, GB]
            assert gauges["ollama.up"] == [(server, 1)]
            assert_documented(gauges)
            assert_documented({k for pts in gauges.values() for a, _v in pts for k in a})
            ps.models[0]["size_vram"] = GB  # evicted in part: 25 % in VRAM
            deadline = time.monotonic() + 5
            while poller.lookup("llama3.2:1b") != 0.25:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            ps.stop()
            # Ollama gone: up=0 and no stale residency.
            deadline = time.monotonic() + 5
            while _gauges(reader).get("ollama.up") != [(server, 0)]:
                assert time.monotonic() < deadline, _gauges(reader)
                time.sleep(0.05)
            assert "ollama.model.vram.ratio" not in _gauges(reader)
            assert poller.lookup("llama3.2:1b") is None
            poller.stop()


def test_residency_poller_never_started_reports_no_up() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("t")
    ResidencyPoller(f"http://127.0.0.1:{free_port()}", meter, 5.0)
    assert _gauges(reader) == {}


def _monitor_env(tmp_path: Path, receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(two_gpus()), encoding="utf-8")
    env = otel_env(receiver, service_name="")
    del env["OTEL_SERVICE_NAME"]  # the monitor's default service name
    return {
        **env,
        "FAKE_PYNVML_SCENARIO": str(scenario),
        "PYTHONPATH": FAKE_PYTHONPATH,
        **extra,
    }


@pytest.mark.integration
def test_monitor_exports_gpu_and_ollama_residency_until_sigterm(tmp_path: Path) -> None:
    """A long-lived `platform-otel monitor`: GPU gauges, /api/ps residency, up 1 -> 0, clean exit."""
    argv = [sys.executable, "-m", "platform_otel._cli", "monitor", "--interval", "0.2"]
    with OtlpReceiver("grpc") as receiver, PsServer(copy.deepcopy(MODELS)) as ps:
        env = _monitor_env(tmp_path, receiver)
        with start_process([*argv, "--ollama", ps.url], env) as monitor:
            points = receiver.wait_for(
                lambda r: (
                    {p.name for p in r.metrics()}
                    >= {"hw.gpu.utilization", "hw.power", "ollama.model.vram.ratio", "ollama.up"}
                    and r.metrics()
                ),
                timeout=20,
            )
            ratio = {
                p.attributes["gen_ai.request.model"]: p.value
                for p in points
                if p.name == "ollama.model.vram.ratio"
            }
            assert ratio == {"llama3.2:1b": 0.75, "nomic-embed-text:latest": 1.0}
            util = {
                p.attributes["hw.id"]: p.value for p in points if p.name == "hw.gpu.utilization"
            }
            assert util == {GPU0: 0.4, GPU1: 0.9}
            assert {p.resource["service.name"] for p in points} == {"platform-otel-monitor"}
            assert_documented({p.name for p in points})
            ps.stop()
            receiver.wait_for(
                lambda r: [p for p in r.metrics() if p.name == "ollama.up" and p.value == 0],
                timeout=20,
            )
            rc = monitor.stop(signal.SIGTERM)
            assert rc == 0, str(monitor)
            assert monitor.exit_duration is not None and monitor.exit_duration < 6, str(monitor)
    assert "platform-otel monitor: GPU 2 device(s)" in monitor.stderr, monitor.stderr
    assert f"Ollama {ps.url}/api/ps" in monitor.stderr
    assert f"metrics to {receiver.endpoint} every " in monitor.stderr, monitor.stderr
    assert "Traceback" not in monitor.stderr


@pytest.mark.integration
def test_monitor_without_gpu_and_ollama_says_why_and_exits(tmp_path: Path) -> None:
    _safety.forget("decline:gpu")
    with OtlpReceiver("grpc") as receiver:
        env = _monitor_env(tmp_path, receiver)
        env.pop("FAKE_PYNVML_SCENARIO")  # the stand-in then reports no NVML library
        env["OTEL_METRICS_EXPORTER"] = "console"  # the start line names it, not an endpoint
        argv = [sys.executable, "-m", "platform_otel._cli", "monitor", "--no-ollama"]
        with start_process(argv, env) as monitor:
            monitor.proc.wait(30)
        rc = monitor.stop()
    assert rc == 2, str(monitor)
    assert "GPU off (no NVIDIA driver found" in monitor.stderr
    assert "metrics to console every " in monitor.stderr, monitor.stderr
    assert "nothing to monitor" in monitor.stderr


@pytest.mark.parametrize("driver", [True, False], ids=["two-gpus", "no-driver"])
def test_doctor_probes_nvml(tmp_path: Path, driver: bool) -> None:
    """`platform-otel doctor` says which GPUs NVML sees, or why the gpu integration will be off."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(two_gpus()), encoding="utf-8")
    env = {"PYTHONPATH": FAKE_PYTHONPATH}
    if driver:
        env["FAKE_PYNVML_SCENARIO"] = str(scenario)
    report = doctor_report(env)
    state = next(i["state"] for i in report["integrations"] if i["name"] == "gpu")
    if driver:
        assert "2 device(s): NVIDIA L4 " + GPU0 in state, state
    else:
        assert state.startswith("inactive: no NVIDIA driver found"), state


@pytest.mark.parametrize(
    ("given", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:11500", "http://gpu-box:11500"),
        (":56789", "http://127.0.0.1:56789"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("https://gpu-box", "https://gpu-box:443"),
        ("https://gpu-box:8443/ollama/", "https://gpu-box:8443/ollama"),
        ("[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_url_is_read_like_the_ollama_client(
    given: str | None, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ollama / OLLAMA_HOST mean what they mean to the ollama client (its own doctest cases)."""
    from platform_otel._cli import _ollama_url

    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert _ollama_url(given) == url
    if given is not None:
        monkeypatch.setenv("OLLAMA_HOST", given)
        assert _ollama_url(None) == url
