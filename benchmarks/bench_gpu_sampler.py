"""Cost of the GPU sampler (platform_otel.instrumentation.gpu), with the stand-in pynvml.

    .venv/bin/python benchmarks/bench_gpu_sampler.py [--seconds 10] [--real]

Prints JSON: CPU time per sample (two GPUs, every field, two processes), the share
of one core at the default 1 Hz, the sampler thread's CPU share over a real run at
1 Hz, one metric collection of all GPU instruments, and one correlate() call for a
10 s call (10 samples, in a full 10-minute history). The stand-in answers from Python dicts; real NVML calls are ioctls into
the driver and cost more per field (docs/gpu.md). ``--real`` measures the installed
nvidia-ml-py against this machine's driver and GPUs instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 1 Hz run")
    parser.add_argument("--real", action="store_true", help="the real NVML, not the stand-in")
    args = parser.parse_args()
    if not args.real:
        sys.path.insert(0, str(ROOT / "tests" / "support" / "fake_pynvml"))

    import pynvml
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from platform_otel.instrumentation import InstrumentationContext, gpu

    if args.real:
        assert not getattr(pynvml, "FAKE", False)
    else:
        from tests.test_gpu import two_gpus

        pynvml.configure(two_gpus())
    sampler = gpu.Sampler(pynvml, 1.0)
    reason = sampler.open()
    assert reason is None, reason
    print(f"devices: {[d.attributes for d in sampler.devices]}", file=sys.stderr)
    first = sampler.sample()
    print(f"first sample: {first}", file=sys.stderr)
    for _ in range(200):  # warm up
        sampler.sample()
    n = 5000 if not args.real else 500
    cpu0 = time.thread_time_ns()
    for _ in range(n):
        sampler.sample()
    per_sample_us = (time.thread_time_ns() - cpu0) / n / 1000
    sampler.stop()

    reader = InMemoryMetricReader()
    ctx = InstrumentationContext(
        settings=types.SimpleNamespace(gpu_interval=1.0, gpu_device=None),  # type: ignore[arg-type]
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        meter_provider=MeterProvider(metric_readers=[reader], shutdown_on_exit=False),
        logger_provider=None,
    )
    assert gpu.instrument(ctx) is None
    running = gpu.sampler()
    assert running is not None
    wall0 = time.monotonic()
    time.sleep(args.seconds)
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
    print(
        json.dumps(
            {
                "nvml": "real" if args.real else "stand-in",
                "devices": len(sampler.devices),
                "cpu_per_sample_us": round(per_sample_us, 1),
                "core_share_at_1hz_percent": round(per_sample_us / 1e6 * 100, 4),
                "run_seconds": round(wall, 1),
                "run_samples": run_samples,
                "run_thread_core_share_percent": round(thread_share * 100, 4),
                "correlate_10s_call_us": round(correlate_us, 1),
                "metric_collection_us": round(collect_us, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
