"""Cost of the GPU sampler (platform_otel.instrumentation.gpu), with the stand-in pynvml.

    python benchmarks/bench_gpu_sampler.py [--seconds 10] [--real] [--monitor]
    python benchmarks/run.py --only gpu_sampler

Measures CPU time per sample (two GPUs, every field, two processes), the share of
one core at the default 1 Hz, the sampler thread's CPU share over a real run at
1 Hz, one metric collection of all GPU instruments, and one ``correlate()`` for a
10 s call (10 samples, in a full 10-minute history). The stand-in answers from
Python dicts, so the driver's own time per NVML call is not included (docs/gpu.md).
``--real`` measures the installed nvidia-ml-py against this machine's driver instead.
``--monitor`` measures a whole ``platform-otel monitor`` process instead: CPU share and
resident memory while it samples two stand-in GPUs at 1 Hz, polls a local ``/api/ps``
every 5 s and exports over gRPC every 10 s to a local OTLP receiver.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "src")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

__all__ = ["measure", "measure_monitor", "run"]


def _stand_in() -> Any:
    """The tests' stand-in pynvml, loaded by path (never shadowing a real one elsewhere)."""
    path = ROOT / "tests" / "support" / "fake_pynvml" / "pynvml.py"
    spec = importlib.util.spec_from_file_location("platform_otel_bench_pynvml", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from tests.test_gpu import two_gpus

    module.configure(two_gpus())
    return module


def measure(real: bool = False, seconds: float = 10.0) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from platform_otel.instrumentation import InstrumentationContext, gpu

    if real:
        import pynvml as nvml
    else:
        nvml = _stand_in()
    sampler = gpu.Sampler(nvml, 1.0)
    reason = sampler.open()
    if reason:
        raise RuntimeError(reason)
    print(f"devices: {[d.attributes for d in sampler.devices]}", file=sys.stderr)
    print(f"first sample: {sampler.sample()}", file=sys.stderr)
    for _ in range(200):  # warm up
        sampler.sample()
    n = 500 if real else 5000
    cpu0 = time.thread_time_ns()
    for _ in range(n):
        sampler.sample()
    per_sample_us = (time.thread_time_ns() - cpu0) / n / 1000
    devices = len(sampler.devices)
    sampler.stop()

    # The integration as init() runs it: its own thread at 1 Hz, gauges on a reader.
    reader = InMemoryMetricReader()
    ctx = InstrumentationContext(
        settings=types.SimpleNamespace(gpu_interval=1.0, gpu_device=None),  # type: ignore[arg-type]
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        meter_provider=MeterProvider(metric_readers=[reader], shutdown_on_exit=False),
        logger_provider=None,
    )
    sys.modules["pynvml"], saved = nvml, sys.modules.get("pynvml")
    try:
        assert gpu.instrument(ctx) is None
    finally:
        if saved is not None:
            sys.modules["pynvml"] = saved
        else:
            del sys.modules["pynvml"]
    running = gpu.sampler()
    assert running is not None
    wall0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    thread_share = running.cpu_ns / 1e9 / wall  # CPU time the thread spent sampling
    run_samples = running.sample_count
    for _ in range(600):  # a full 10-minute history at 1 Hz for correlate()
        running.sample()
    history = running.samples()
    start, end = history[-10].t_ns, history[-1].t_ns  # a 10 s call at 1 Hz: 10 samples
    print(f"correlate: {gpu.correlate(start, end)}", file=sys.stderr)
    m = 2000
    cpu0 = time.thread_time_ns()
    for _ in range(m):
        gpu.correlate(start, end)
    correlate_us = (time.thread_time_ns() - cpu0) / m / 1000
    cpu0 = time.thread_time_ns()
    for _ in range(100):
        reader.get_metrics_data()
    collect_us = (time.thread_time_ns() - cpu0) / 100 / 1000
    gpu.uninstrument()
    return {
        "nvml": "real" if real else "stand-in",
        "devices": devices,
        "cpu_per_sample_us": round(per_sample_us, 1),
        "core_share_at_1hz_percent": round(per_sample_us / 1e6 * 100, 4),
        "run_seconds": round(wall, 1),
        "run_samples": run_samples,
        "run_thread_core_share_percent": round(thread_share * 100, 4),
        "correlate_10s_call_us": round(correlate_us, 1),
        "metric_collection_us": round(collect_us, 1),
    }


def measure_monitor(seconds: float = 60.0) -> dict[str, Any]:
    """CPU share and RSS of a running ``platform-otel monitor`` (stand-in NVML, local /api/ps)."""
    import os
    import tempfile

    from tests.support.fixtures import start_process
    from tests.support.ollama_ps import PsServer
    from tests.support.otlp_receiver import OtlpReceiver
    from tests.test_gpu import FAKE_PYTHONPATH, two_gpus

    def cpu_seconds(pid: int) -> float:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(pid: int) -> float:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            line = next(ln for ln in f if ln.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    models = [{"name": "llama3.2:1b", "size": 4 << 30, "size_vram": 3 << 30}]
    with tempfile.TemporaryDirectory() as tmp, OtlpReceiver("grpc") as receiver:
        scenario = os.path.join(tmp, "scenario.json")
        with open(scenario, "w", encoding="utf-8") as f:
            json.dump(two_gpus(), f)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "10000",
            "FAKE_PYNVML_SCENARIO": scenario,
            "PYTHONPATH": FAKE_PYTHONPATH,
        }
        argv = [sys.executable, "-m", "platform_otel._cli", "monitor"]
        with PsServer(models) as ps, start_process([*argv, "--ollama", ps.url], env) as monitor:
            time.sleep(5)  # past start-up
            cpu0, t0 = cpu_seconds(monitor.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, t1 = cpu_seconds(monitor.pid), time.monotonic()
            rss = rss_mib(monitor.pid)
    return {
        "monitor_core_share_percent": round((cpu1 - cpu0) / (t1 - t0) * 100, 3),
        "monitor_rss_mib": round(rss, 1),
        "seconds": round(t1 - t0, 1),
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows for benchmarks/run.py (stand-in NVML; target: well under 1 % of a core at 1 Hz)."""
    from _common import row

    r = measure(real=False, seconds=3.0 if quick else 10.0)
    name = "gpu sampler"
    notes = "stand-in NVML, 2 GPUs; driver time per NVML call not included"
    return [
        row(name, "CPU per sample", r["cpu_per_sample_us"], "us", higher_is_better=False),
        row(
            name,
            "sampler thread at 1 Hz",
            r["run_thread_core_share_percent"],
            "% of a core",
            higher_is_better=False,
            target="< 1 %",
            ok=r["run_thread_core_share_percent"] < 1.0,
            notes=notes,
        ),
        row(
            name,
            "correlate() of a 10 s call",
            r["correlate_10s_call_us"],
            "us",
            higher_is_better=False,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 1 Hz run")
    parser.add_argument("--real", action="store_true", help="the real NVML, not the stand-in")
    parser.add_argument("--monitor", action="store_true", help="a platform-otel monitor process")
    args = parser.parse_args()
    if args.monitor:
        print(json.dumps(measure_monitor(args.seconds), indent=1))
    else:
        print(json.dumps(measure(args.real, args.seconds), indent=1))


if __name__ == "__main__":
    main()
