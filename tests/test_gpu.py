"""GPU sampler (platform_otel.instrumentation.gpu) at the NVML boundary.

NVML is replaced by the stand-in ``tests/support/fake_pynvml/pynvml.py``: the real
module's function names, return shapes and error classes (checked against the
installed nvidia-ml-py below), driven by a JSON scenario. Everything above it is
real: the OpenTelemetry SDK with an in-memory reader, ``init()`` exporting to a
real OTLP receiver, the registry, a real ``fork()``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from platform_otel import _safety
from platform_otel.instrumentation import InstrumentationContext, enable, gpu
from tests.support.documented import assert_documented
from tests.support.fixtures import REPO_ROOT, otel_env, run_python
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.timeout(60)

FAKE_DIR = REPO_ROOT / "tests" / "support" / "fake_pynvml"
#: A child's PYTHONPATH with the stand-in first (a PYTHONPATH given to child_env replaces its own).
FAKE_PYTHONPATH = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT), str(FAKE_DIR)])
GB = 1 << 30
GPU0 = "GPU-6b0e7a1c-0000-4c1e-9d3a-000000000000"
GPU1 = "GPU-6b0e7a1c-1111-4c1e-9d3a-111111111111"
MIG_GPU = "GPU-a100a100-2222-4c1e-9d3a-222222222222"
MIG0 = "MIG-5c1d6f2e-0000-5a8e-b1c4-aaaaaaaaaaaa"
MIG1 = "MIG-5c1d6f2e-1111-5a8e-b1c4-bbbbbbbbbbbb"


def two_gpus() -> dict[str, Any]:
    """Two GPUs; the second (a consumer card) has no power or energy readings."""
    return {
        "driver": "550.54.15",
        "devices": [
            {
                "uuid": GPU0,
                "name": "NVIDIA L4",
                "util": 40,
                "mem_util": 12,
                "mem_total": 24 * GB,
                "mem_used": 6 * GB,
                "temp": 61,
                "power_mw": 72_345,  # 72.345 W: no integer division
                "energy_mj": 5_000_500,
                "throttle": 0x4 | 0x1,  # sw_power_cap + gpu_idle
                "processes": [[4242, 5 * GB, "ollama"], [4343, GB, "python3"]],
            },
            {
                "uuid": GPU1,
                "name": "NVIDIA GeForce RTX 3060",
                "util": 90,
                "mem_util": 70,
                "mem_total": 12 * GB,
                "mem_used": 11 * GB,
                "temp": 83,
                "throttle": 0x20,  # sw_thermal_slowdown
                "unsupported": ["power", "energy"],
            },
        ],
    }


def mig_gpu() -> dict[str, Any]:
    """An A100 in MIG mode with two MIG devices (no utilization, temperature on MIG handles)."""
    return {
        "driver": "550.54.15",
        "devices": [
            {
                "uuid": MIG_GPU,
                "name": "NVIDIA A100-SXM4-40GB",
                "mem_total": 40 * GB,
                "mem_used": 15 * GB,
                "temp": 55,
                "power_mw": 180_000,
                "energy_mj": 9_000_000,
                "throttle": 0,
                "unsupported": ["util"],  # NVML does not report it for a GPU in MIG mode
                "mig": [
                    {"uuid": MIG0, "mem_total": 10 * GB, "mem_used": 4 * GB,
                     "processes": [[777, 3 * GB, "ollama"]]},
                    {"uuid": MIG1, "mem_total": 20 * GB, "mem_used": 11 * GB},
                ],
            }
        ],
    }  # fmt: skip


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The stand-in pynvml as ``sys.modules['pynvml']`` (first on sys.path), reset per test."""
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_DIR / "pynvml.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    module.configure(two_gpus())
    _safety.forget("decline:gpu")
    _safety.forget("gpu:failing")
    try:
        yield module
    finally:
        gpu.uninstrument()


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        values = {"gpu_interval": 30.0, "gpu_device": None, **settings}
        self.ctx = InstrumentationContext(
            settings=types.SimpleNamespace(**values),  # type: ignore[arg-type]
            tracer_provider=TracerProvider(shutdown_on_exit=False),
            meter_provider=self.meter_provider,
            logger_provider=None,
        )

    def points(self) -> dict[str, list[tuple[dict[str, Any], float, str]]]:
        """metric name -> [(attributes, value, unit)] of the latest collection."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[tuple[dict[str, Any], float, str]]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        out.setdefault(m.name, []).append(
                            (dict(p.attributes or {}), p.value, m.unit or "")
                        )
        return out


def by_id(points: list[tuple[dict[str, Any], float, str]]) -> dict[str, float]:
    return {attrs["hw.id"]: value for attrs, value, _unit in points}


# --------------------------------------------------------------------------- stand-in


def test_stand_in_has_the_real_modules_names_and_signatures() -> None:
    """Every NVML function and error class the stand-in (and gpu.py) uses exists in nvidia-ml-py."""
    real = importlib.import_module("pynvml")
    assert not getattr(real, "FAKE", False), real.__file__
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_DIR / "pynvml.py")
    assert spec and spec.loader
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    names = [n for n in vars(fake) if n.startswith(("nvml", "NVML"))]
    assert len(names) > 40
    missing = [n for n in names if not hasattr(real, n)]
    assert not missing, missing
    for name in names:
        ours, theirs = getattr(fake, name), getattr(real, name)
        if inspect.isfunction(ours):
            assert list(inspect.signature(ours).parameters) == list(
                inspect.signature(inspect.unwrap(theirs)).parameters
            ), name
        elif isinstance(ours, int):
            assert ours == theirs, name
    for cls in ("NotSupported", "LibraryNotFound", "DriverNotLoaded", "GpuIsLost", "Uninitialized"):
        assert issubclass(getattr(fake, f"NVMLError_{cls}"), fake.NVMLError)
        err = real.NVMLError(getattr(real, f"NVMLError_{cls}")().value)
        assert type(err).__name__ == type(fake.NVMLError(err.value)).__name__
    source = Path(gpu.__file__).read_text(encoding="utf-8")
    used = set(__import__("re").findall(r"nvml\.(nvml\w+)", source))
    assert used and not [n for n in used if not hasattr(real, n)]
    assert not [n for n in used if not hasattr(fake, n)]


# --------------------------------------------------------------------------- metrics


def test_two_gpus_metrics_one_without_power(nvml: types.ModuleType) -> None:
    """Per-GPU gauges with hw.* attributes; the GPU without power readings has none (not 0)."""
    h = Harness()
    assert gpu.instrument(h.ctx) is None
    points = h.points()
    util = points["hw.gpu.utilization"]
    assert by_id(util) == {GPU0: 0.4, GPU1: 0.9}
    attrs = next(a for a, _v, _u in util if a["hw.id"] == GPU0)
    assert attrs == {
        "hw.id": GPU0,
        "hw.name": "NVIDIA L4",
        "hw.vendor": "NVIDIA",
        "hw.type": "gpu",
        "hw.driver_version": "550.54.15",
        "hw.gpu.task": "general",
    }
    assert by_id(points["hw.gpu.memory.usage"]) == {GPU0: 6 * GB, GPU1: 11 * GB}
    assert by_id(points["hw.gpu.memory.limit"]) == {GPU0: 24 * GB, GPU1: 12 * GB}
    assert by_id(points["hw.gpu.memory.utilization"]) == {GPU0: 0.25, GPU1: 11 / 12}
    assert by_id(points["hw.temperature"]) == {GPU0: 61.0, GPU1: 83.0}
    assert by_id(points["hw.power"]) == {GPU0: pytest.approx(72.345)}  # GPU1: absent
    assert by_id(points["hw.energy"]) == {GPU0: pytest.approx(5000.5)}
    units = {name: pts[0][2] for name, pts in points.items()}
    assert units == {
        "hw.gpu.utilization": "1",
        "hw.gpu.memory.usage": "By",
        "hw.gpu.memory.limit": "By",
        "hw.gpu.memory.utilization": "1",
        "hw.temperature": "Cel",
        "hw.power": "W",
        "hw.energy": "J",
        "hw.gpu.throttle": "1",
        "hw.gpu.process.memory.usage": "By",
    }
    throttle = {
        (a["hw.id"], a["hw.gpu.throttle.reason"]): v for a, v, _u in points["hw.gpu.throttle"]
    }
    assert len(throttle) == 2 * len(gpu.THROTTLE_REASONS)  # bounded: every reason, 1 or 0
    on = sorted(k for k, v in throttle.items() if v == 1)
    assert on == [(GPU0, "gpu_idle"), (GPU0, "sw_power_cap"), (GPU1, "sw_thermal_slowdown")]
    procs = [(a, v) for a, v, _u in points["hw.gpu.process.memory.usage"]]
    assert procs == [
        ({"hw.id": GPU0, "process.executable.name": "ollama"}, 5 * GB),
        ({"hw.id": GPU0, "process.executable.name": "python3"}, GB),
    ]
    assert_documented(points)
    assert_documented({k for pts in points.values() for a, _v, _u in pts for k in a})


def test_processes_are_grouped_by_name_bounded_largest_first(nvml: types.ModuleType) -> None:
    """Same-name processes are summed (pids churn, names do not); a nameless one keeps its pid."""
    scenario = two_gpus()
    scenario["devices"][0]["processes"] = [
        *[[1000 + i, (i + 1) * 1000, f"worker{i}"] for i in range(40)],
        [2000, 30_000, "ollama"],
        [2001, 30_000, "ollama"],
        [2002, 45_000, None],  # NVML and /proc cannot name it (another PID namespace)
    ]
    nvml.configure(scenario)
    h = Harness()
    assert gpu.instrument(h.ctx) is None
    procs = [(a, v) for a, v, _u in h.points()["hw.gpu.process.memory.usage"]]
    assert procs == [
        ({"hw.id": GPU0, "process.executable.name": "ollama"}, 60_000),
        ({"hw.id": GPU0, "process.pid": 2002}, 45_000),
        ({"hw.id": GPU0, "process.executable.name": "worker39"}, 40_000),
        ({"hw.id": GPU0, "process.executable.name": "worker38"}, 39_000),
        ({"hw.id": GPU0, "process.executable.name": "worker37"}, 38_000),
    ]
    assert len(procs) == gpu.TOP_PROCESSES


def test_mig_devices_have_their_own_hw_id_and_parent(nvml: types.ModuleType) -> None:
    """A GPU in MIG mode: each MIG device is reported under its MIG UUID with hw.parent."""
    nvml.configure(mig_gpu())
    h = Harness()
    assert gpu.instrument(h.ctx) is None
    points = h.points()
    memory = {a["hw.id"]: (a.get("hw.parent"), v) for a, v, _u in points["hw.gpu.memory.usage"]}
    assert memory == {
        MIG_GPU: (None, 15 * GB),
        MIG0: (MIG_GPU, 4 * GB),
        MIG1: (MIG_GPU, 11 * GB),
    }
    assert "hw.gpu.utilization" not in points  # NotSupported everywhere: absent, never 0
    assert by_id(points["hw.temperature"]) == {MIG_GPU: 55.0}  # the chip, not its slices
    assert [a["hw.id"] for a, _v, _u in points["hw.gpu.process.memory.usage"]] == [MIG0]
    # One physical GPU: calls are attributed to it.
    assert gpu.metric_attributes() == {"hw.id": MIG_GPU}


def _minimal_nvml() -> types.ModuleType:
    """A bare pynvml look-alike: no MIG, driver version, throttle or process calls, and
    error classes without ``value`` (how a hand-written stand-in might look)."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    m.NVMLError, m.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported  # type: ignore[attr-defined]
    gpus = [("GPU-min-0", 30, 1000), ("GPU-min-1", 70, None)]

    def power(h: int) -> int:
        if gpus[h][2] is None:
            raise NVMLError_NotSupported()
        return gpus[h][2]

    m.__dict__.update(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: gpus[h][0].encode(),  # older pynvml: bytes
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=gpus[h][1], memory=0),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=100, free=60, used=40),
        nvmlDeviceGetPowerUsage=power,
    )
    return m


def test_a_bare_pynvml_without_optional_calls_still_works() -> None:
    """Missing optional functions and value-less errors: those fields are absent, the rest reported."""
    h = Harness()
    sampler = gpu.Sampler(_minimal_nvml(), 30.0)
    assert sampler.open() is None
    gpu.register_instruments(h.meter_provider.get_meter("t"), sampler)
    sampler.sample()
    points = h.points()
    assert by_id(points["hw.gpu.utilization"]) == {"GPU-min-0": 0.3, "GPU-min-1": 0.7}
    assert by_id(points["hw.power"]) == {"GPU-min-0": 1.0}
    assert set(points) == {
        "hw.gpu.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit",
        "hw.gpu.memory.utilization", "hw.power",
    }  # fmt: skip
    assert sampler.devices[1].unsupported >= {"power", "temp", "throttle", "processes"}
    assert points["hw.gpu.utilization"][0][0].keys() == {
        "hw.id", "hw.type", "hw.vendor", "hw.gpu.task"
    }  # fmt: skip
    sampler.stop()


def test_unsupported_fields_are_absent_and_not_asked_again(nvml: types.ModuleType) -> None:
    scenario = two_gpus()
    scenario["devices"][0]["unsupported"] = ["temp", "throttle", "processes", "processes_v2"]
    # An old driver: pynvml's unversioned process call raises NVMLLibraryMismatchError.
    scenario["devices"][1]["unsupported"] += ["processes_v3"]
    scenario["devices"][1]["processes"] = [[99, 2 * GB, "ollama"]]
    nvml.configure(scenario)
    sampler = gpu.Sampler(nvml, 30.0)
    assert sampler.open() is None
    for _ in range(5):
        sample = sampler.sample()
    first, second = sample.readings
    assert first.temperature is None and first.throttle is None and first.processes == ()
    assert first.utilization == 0.4 and second.temperature == 83.0
    assert second.processes == ((99, "ollama", 2 * GB),)  # through the _v2 call
    # Unsupported: asked once per device, then never (the old throttle name once, too).
    assert nvml.CALLS["nvmlDeviceGetTemperature"] == 5 + 1
    assert nvml.CALLS["nvmlDeviceGetPowerUsage"] == 5 + 1
    assert nvml.CALLS["nvmlDeviceGetCurrentClocksThrottleReasons"] == 1
    sampler.stop()


def test_nvml_errors_mid_run_omit_fields_then_recover(
    nvml: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing read drops that field from the sample; when all fail, NVML is re-initialised."""
    scenario = two_gpus()
    nvml.configure(scenario)
    sampler = gpu.Sampler(nvml, 0.05)
    assert sampler.open() is None
    scenario["devices"][0]["errors"] = {"util": "GpuIsLost"}
    reading = sampler.sample().readings[0]
    assert reading.utilization is None and reading.memory_used == 6 * GB
    scenario["devices"][0]["errors"] = {}
    assert sampler.sample().readings[0].utilization == 0.4  # transient: asked again
    inits = nvml.CALLS["nvmlInit"]
    every = ["util", "memory", "temp", "power", "energy", "throttle", "processes"]
    for dev in scenario["devices"]:
        dev["errors"] = dict.fromkeys(every, "Unknown")
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        sampler.start()
        time.sleep(0.3)
        assert sampler.latest() is not None
        assert sampler.latest().readings[0].memory_used is None  # type: ignore[union-attr]
        for dev in scenario["devices"]:
            dev["errors"] = {}
        deadline = time.monotonic() + 5
        while (s := sampler.latest()) is None or s.readings[0].memory_used is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    sampler.stop()
    assert nvml.CALLS["nvmlInit"] > inits  # re-initialised
    failing = [r for r in caplog.records if "NVML reads fail" in r.getMessage()]
    assert len(failing) == 1, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ({"init_error": "LibraryNotFound"}, "no NVIDIA driver found"),
        ({"init_error": "DriverNotLoaded"}, "NVIDIA driver not loaded"),
        ({"driver": "550.54.15", "devices": []}, "no NVIDIA GPU found"),
    ],
    ids=["no-library", "driver-not-loaded", "no-gpu"],
)
def test_no_driver_or_gpu_is_off_with_one_info_line(
    nvml: types.ModuleType, caplog: pytest.LogCaptureFixture, scenario: dict[str, Any], reason: str
) -> None:
    nvml.configure(scenario)
    h = Harness()
    with caplog.at_level(logging.DEBUG, logger="platform_otel"):
        status = enable("gpu", h.ctx)
        enable("gpu", h.ctx)  # asked again (a second init): still one line
    assert not status.active and reason in status.reason
    lines = [r for r in caplog.records if r.name.startswith("platform_otel")]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO
    assert "gpu" in lines[0].getMessage() and "GPU metrics are off" in lines[0].getMessage()
    assert gpu.sampler() is None and gpu.correlate(0, time.monotonic_ns()) == {}
    assert gpu.metric_attributes() == {}
    assert h.points() == {}


def test_sampler_thread_rate_and_bounded_history(nvml: types.ModuleType) -> None:
    sampler = gpu.Sampler(nvml, 0.05)
    assert sampler.capacity == int(gpu.HISTORY_S / 0.05) + 1 or sampler.capacity == 4096
    assert sampler.open() is None
    sampler.start()
    time.sleep(0.55)
    n = len(sampler.samples())
    sampler.stop()
    assert 4 <= n <= 14, n  # first sample + about one per 50 ms (fewer on a loaded machine)
    slow = gpu.Sampler(nvml, 60.0)  # keeps HISTORY_S / 60 + 1 = 11 -> at least 16 samples
    assert slow.open() is None
    for _ in range(slow.capacity + 25):
        slow.sample()
    assert len(slow.samples()) == slow.capacity == 16
    slow.stop()


# --------------------------------------------------------------------------- correlation


def test_correlate_summarises_the_samples_during_a_call(nvml: types.ModuleType) -> None:
    scenario = two_gpus()
    del scenario["devices"][1]  # one GPU: spans and histograms name it
    nvml.configure(scenario)
    h = Harness(gpu_interval=0.2)
    assert gpu.instrument(h.ctx) is None
    sampler = gpu.sampler()
    assert sampler is not None
    start = time.monotonic_ns()
    for util, temp, used, throttle in ((20, 60, 5, 0), (80, 70, 7, 0x40), (50, 65, 6, 0)):
        dev = scenario["devices"][0]
        dev.update(util=util, temp=temp, mem_used=used * GB, throttle=throttle)
        sampler.sample()
    end = time.monotonic_ns()
    attrs = gpu.correlate(start, end)
    assert attrs == {
        "gpu.sample.count": 3,
        "hw.id": GPU0,
        "gpu.utilization.mean": 0.5,
        "gpu.utilization.max": 0.8,
        "gpu.memory.used": 7 * GB,
        "gpu.temperature.max": 70.0,
        "gpu.throttled": True,
        "gpu.throttle.reasons": ("hw_thermal_slowdown",),
    }
    assert_documented(attrs)
    # A call shorter than the interval, between samples: the nearest sample.
    t = time.monotonic_ns()
    short = gpu.correlate(t, t + 1000)
    assert short["gpu.sample.count"] == 1 and short["gpu.utilization.max"] == 0.5
    assert short["gpu.throttled"] is False and "gpu.throttle.reasons" not in short
    # Long before any sample: nothing rather than a misleading value.
    assert gpu.correlate(start - 60 * 10**9, start - 59 * 10**9) == {}
    assert gpu.metric_attributes() == {"hw.id": GPU0}


def test_two_gpus_aggregate_and_no_metric_hw_id(nvml: types.ModuleType) -> None:
    h = Harness()
    assert gpu.instrument(h.ctx) is None
    attrs = gpu.correlate(time.monotonic_ns(), time.monotonic_ns())
    assert "hw.id" not in attrs and gpu.metric_attributes() == {}
    assert attrs["gpu.utilization.mean"] == pytest.approx(0.65)
    assert attrs["gpu.memory.used"] == 17 * GB  # both GPUs
    assert attrs["gpu.temperature.max"] == 83.0
    assert attrs["gpu.throttle.reasons"] == ("sw_power_cap", "sw_thermal_slowdown")


@pytest.mark.parametrize(
    ("scenario", "device", "hw_id", "memory"),
    [
        (two_gpus, "1", GPU1, 11 * GB),
        (two_gpus, GPU0, GPU0, 6 * GB),
        (mig_gpu, MIG1, MIG1, 11 * GB),
    ],
    ids=["index", "uuid", "mig-uuid"],
)
def test_configured_device(
    nvml: types.ModuleType, scenario: Any, device: str, hw_id: str, memory: int
) -> None:
    nvml.configure(scenario())
    h = Harness(gpu_device=device)
    assert gpu.instrument(h.ctx) is None
    assert gpu.metric_attributes() == {"hw.id": hw_id}
    attrs = gpu.correlate(time.monotonic_ns(), time.monotonic_ns())
    assert attrs["hw.id"] == hw_id and attrs["gpu.memory.used"] == memory


def test_unknown_configured_device_warns_and_uses_all(
    nvml: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    _safety.forget("gpu:device")
    h = Harness(gpu_device="GPU-nope")
    with caplog.at_level(logging.WARNING, logger="platform_otel"):
        assert gpu.instrument(h.ctx) is None
    assert gpu.metric_attributes() == {}
    assert any("PLATFORM_OTEL_GPU_DEVICE='GPU-nope'" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- processes


def _fake_env(tmp_path: Path, scenario: dict[str, Any], **extra: str) -> dict[str, str]:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    return {
        "FAKE_PYNVML_SCENARIO": str(path),
        "PYTHONPATH": FAKE_PYTHONPATH,
        **extra,
    }


INIT_APP = """
import json, sys, time
import platform_otel
tel = platform_otel.init(instrument=["gpu"])
import pynvml
assert getattr(pynvml, "FAKE", False), pynvml.__file__
time.sleep(0.8)
platform_otel.shutdown()
"""


@pytest.mark.integration
def test_init_exports_gpu_metrics_to_an_otlp_receiver(tmp_path: Path) -> None:
    """init() with the stand-in first on sys.path: the GPU metrics arrive over OTLP."""
    with OtlpReceiver("grpc") as receiver:
        env = {
            **otel_env(receiver, service_name="gpu-host"),
            **_fake_env(tmp_path, two_gpus(), PLATFORM_OTEL_GPU_INTERVAL="0.1"),
        }
        ran = run_python(INIT_APP, env)
        assert ran.rc == 0, str(ran)
        points = receiver.wait_for(
            lambda r: [p for p in r.metrics() if p.name.startswith("hw.")], timeout=10
        )
    names = {p.name for p in points}
    assert names == {
        "hw.gpu.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit",
        "hw.gpu.memory.utilization", "hw.temperature", "hw.power", "hw.energy",
        "hw.gpu.throttle", "hw.gpu.process.memory.usage",
    }  # fmt: skip
    power = {p.attributes["hw.id"] for p in points if p.name == "hw.power"}
    assert power == {GPU0}
    energy = [p for p in points if p.name == "hw.energy"]
    assert energy[0].type == "sum" and energy[0].is_monotonic
    memory = [p for p in points if p.name == "hw.gpu.memory.usage"]
    assert memory[0].type == "sum" and not memory[0].is_monotonic  # UpDownCounter
    assert {p.type for p in points if p.name == "hw.gpu.utilization"} == {"gauge"}
    assert {p.scope for p in points} == {"platform_otel.gpu"}
    assert_documented(names)
    assert_documented({k for p in points for k in p.attributes})
    assert "GPU metrics are off" not in ran.stderr


FORK_APP = """
import json, os, sys, time
import platform_otel
platform_otel.init(instrument=["gpu"])
from platform_otel.instrumentation import gpu
import pynvml
parent = gpu.sampler()
assert parent is not None and parent.samples()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    time.sleep(0.5)
    s = gpu.sampler()
    latest = s.latest()
    out = {
        "inits": pynvml.CALLS["nvmlInit"],
        "samples": len(s.samples()),
        "util": None if latest is None else latest.readings[0].utilization,
        "correlate": gpu.correlate(time.monotonic_ns() - 10**8, time.monotonic_ns()),
    }
    os.write(w, json.dumps(out).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
child = json.loads(os.read(r, 65536))
print(json.dumps({"child": child, "parent_inits": pynvml.CALLS["nvmlInit"]}))
platform_otel.shutdown()
"""


@pytest.mark.integration
def test_forked_child_reinitialises_nvml(tmp_path: Path) -> None:
    """A forked child samples with its own NVML initialisation, not the parent's handles."""
    env = {
        **otel_env(None, OTEL_METRICS_EXPORTER="none", OTEL_TRACES_EXPORTER="none",
                   OTEL_LOGS_EXPORTER="none"),
        **_fake_env(tmp_path, two_gpus(), PLATFORM_OTEL_GPU_INTERVAL="0.1"),
    }  # fmt: skip
    ran = run_python(FORK_APP, env)
    assert ran.rc == 0, str(ran)
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    child = result["child"]
    assert child["inits"] == result["parent_inits"] + 1  # the child's own nvmlInit
    assert child["samples"] >= 2 and child["util"] == 0.4
    assert child["correlate"]["gpu.utilization.max"] == pytest.approx(0.9)
    assert "NVML reads fail" not in ran.stderr


UNFIXED_FORK = """
import os, sys
sys.path.insert(0, sys.argv[1])
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
pid = os.fork()
if pid == 0:
    try:
        pynvml.nvmlDeviceGetUtilizationRates(h)
        os._exit(0)
    except pynvml.NVMLError_Uninitialized:
        os._exit(3)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_stand_in_rejects_handles_used_after_fork(tmp_path: Path) -> None:
    """The fork test above can fail: the stand-in refuses a parent's handle in the child."""
    ran = run_python(UNFIXED_FORK, _fake_env(tmp_path, two_gpus()), args=[str(FAKE_DIR)])
    assert ran.rc == 0, str(ran)
    assert ran.stdout.strip() == "3"


# --------------------------------------------------------------------------- real pynvml

STUB_NVML_C = r"""
/* The few NVML entry points a GPU-less test needs, with NVML's C signatures. */
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
static int inited = 0;
int nvmlInitWithFlags(unsigned int flags) { inited = 1; return 0; }
int nvmlShutdown(void) { inited = 0; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { if (!inited) return 1; *count = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { *h = (void *)0x1; return 0; }
static int copy(char *dst, const char *src, unsigned int n) {
    unsigned int i = 0; for (; src[i] && i + 1 < n; i++) dst[i] = src[i]; dst[i] = 0; return 0;
}
int nvmlDeviceGetUUID(void *h, char *s, unsigned int n) { return copy(s, "GPU-stub-0000", n); }
int nvmlDeviceGetName(void *h, char *s, unsigned int n) { return copy(s, "Stub GPU", n); }
int nvmlDeviceGetMemoryInfo(void *h, nvmlMemory_t *m) {
    m->total = 8ULL << 30; m->used = 3ULL << 30; m->free = 5ULL << 30; return 0;
}
int nvmlDeviceGetUtilizationRates(void *h, nvmlUtilization_t *u) { u->gpu = 37; u->memory = 5; return 0; }
int nvmlDeviceGetTemperature(void *h, int sensor, unsigned int *t) { *t = 64; return 0; }
int nvmlDeviceGetPowerUsage(void *h, unsigned int *mw) { return 3; /* NOT_SUPPORTED */ }
int nvmlSystemGetDriverVersion(char *s, unsigned int n) { return copy(s, "550.54.15", n); }
int nvmlDeviceGetCurrentClocksEventReasons(void *h, unsigned long long *r) { *r = 0x40; return 0; }
int nvmlDeviceGetTotalEnergyConsumption(void *h, unsigned long long *mj) {
    *mj = 123456789ULL; return 0;
}
typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } nvmlProcessInfo_t;
int nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *count, nvmlProcessInfo_t *p) {
    if (p == 0) { *count = 2; return 7; /* INSUFFICIENT_SIZE: pynvml asks again with room */ }
    p[0].pid = 4242; p[0].used = 3ULL << 30; p[1].pid = 999999; p[1].used = 1ULL << 30;
    *count = 2; return 0;
}
int nvmlSystemGetProcessName(unsigned int pid, char *s, unsigned int n) {
    return pid == 4242 ? copy(s, "/usr/bin/ollama", n) : 6; /* NOT_FOUND */
}
"""

REAL_PYNVML_APP = """
import json, sys
import pynvml
from platform_otel.instrumentation import gpu
assert not getattr(pynvml, "FAKE", False)
missing = gpu.Sampler(pynvml, 1.0, library_dirs=[sys.argv[2]]).open()
s = gpu.Sampler(pynvml, 1.0, library_dirs=[sys.argv[2], sys.argv[1]])
reason = s.open()
r = s.sample().readings[0]
print(json.dumps({"missing": missing, "reason": reason, "loaded_from": s.loaded_from,
                  "attrs": s.devices[0].attributes, "util": r.utilization, "used": r.memory_used,
                  "temp": r.temperature, "power": r.power, "energy": r.energy,
                  "throttle": sorted(r.throttle), "processes": r.processes}))
"""


def test_real_pynvml_finds_nvml_outside_the_loader_path(tmp_path: Path) -> None:
    """Containers: the driver's NVML is not on the loader path; it is found in a known directory.

    Runs the real nvidia-ml-py against a stand-in ``libnvidia-ml.so.1`` compiled here
    (NVML's C signatures for every call the sampler makes; no MIG calls, as on an old
    driver): real ctypes loading, struct decoding and error mapping.
    """
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in libnvidia-ml.so.1")
    libdir = tmp_path / "driver" / "lib64"
    libdir.mkdir(parents=True)
    (tmp_path / "nvml.c").write_text(STUB_NVML_C, encoding="utf-8")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o",
         str(libdir / "libnvidia-ml.so.1"), str(tmp_path / "nvml.c")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ran = run_python(
        REAL_PYNVML_APP, {"LD_LIBRARY_PATH": ""}, args=[str(libdir), str(tmp_path / "empty")]
    )
    assert ran.rc == 0, str(ran)
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert "no NVIDIA driver found" in out["missing"]  # not loadable by name alone
    assert out["reason"] is None
    assert out["loaded_from"] == str(libdir / "libnvidia-ml.so.1")
    assert out["attrs"] == {
        "hw.id": "GPU-stub-0000",
        "hw.type": "gpu",
        "hw.vendor": "NVIDIA",
        "hw.name": "Stub GPU",
        "hw.driver_version": "550.54.15",
    }
    assert (out["util"], out["used"], out["temp"]) == (0.37, 3 << 30, 64.0)
    assert out["power"] is None  # NotSupported: absent
    assert out["energy"] == 123456.789 and out["throttle"] == ["hw_thermal_slowdown"]
    # pynvml's two-call protocol for the process list; NVML names one, /proc cannot the other
    assert out["processes"] == [[4242, "ollama", 3 << 30], [999999, None, 1 << 30]]


NO_DRIVER_APP = """
import platform_otel
platform_otel.init(log_console="always")
from platform_otel.instrumentation import status
import pynvml
assert not getattr(pynvml, "FAKE", False)
print(status("gpu").reason)
platform_otel.shutdown()
"""


@pytest.mark.integration
def test_init_on_a_host_without_nvidia_driver_logs_one_info_line() -> None:
    """Real nvidia-ml-py, no driver on this host: init() succeeds, GPU off, one INFO line."""
    ran = run_python(NO_DRIVER_APP, otel_env(None, OTEL_TRACES_EXPORTER="none",
                                              OTEL_METRICS_EXPORTER="none",
                                              OTEL_LOGS_EXPORTER="none"))  # fmt: skip
    assert ran.rc == 0, str(ran)
    if "GPU metrics are off" not in ran.stdout:
        pytest.skip(f"this host has an NVIDIA driver: {ran.stdout.strip()}")
    lines = [ln for ln in ran.stderr.splitlines() if "platform_otel" in ln or "platform-otel" in ln]
    gpu_lines = [ln for ln in lines if "gpu" in ln.lower()]
    assert len(gpu_lines) == 1 and " INFO " in gpu_lines[0], ran.stderr
    assert "no NVIDIA driver found" in gpu_lines[0]
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr
