"""NVIDIA GPU metrics from NVML, and GPU state for the spans of calls that used the GPU.

Why a sampler thread instead of reading NVML in the metric callbacks: the
spans of LLM calls need to know what the GPU did *during* the call, long after
the last export. One background thread reads every GPU at a low rate
(``PLATFORM_OTEL_GPU_INTERVAL``, default 1 s) into a bounded ring buffer of
timestamped samples; the observable instruments report the newest sample, and
:func:`correlate` summarises the samples taken during a call.

What NVML cannot read on a device (``NVMLError_NotSupported``, a function the
driver lacks, no permission) is left out, never reported as 0, and not asked
for again. Other errors (GPU lost, driver unloaded) leave the field out of that
sample; when every read fails the sampler re-initialises NVML on its next tick.

NVML handles are per process: after ``fork()`` the child starts its own sampler,
which initialises NVML again (:func:`_after_fork_in_child`, called by ``init()``'s
one at-fork hook). Without an NVIDIA driver or GPU the integration declines
with one info line. ``pynvml`` (package ``nvidia-ml-py``) is imported only by
:func:`instrument`.

Names are pinned below and listed in docs/telemetry.md ("GPU"); docs/gpu.md
explains them, the cost and MIG.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._safety import guard, log_once, report_internal_error

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.util.types import AttributeValue

    from . import InstrumentationContext

__all__ = [
    "DECLINE_LEVEL",
    "LIBRARY",
    "Sampler",
    "correlate",
    "instrument",
    "metric_attributes",
    "sampler",
    "uninstrument",
]

LIBRARY = "pynvml"
#: No GPU or no driver is normal on most hosts: the registry logs the decline at INFO.
DECLINE_LEVEL = logging.INFO

# Metrics (hardware semantic conventions; the last two are platform-otel's own).
UTILIZATION = "hw.gpu.utilization"
MEMORY_USAGE = "hw.gpu.memory.usage"
MEMORY_LIMIT = "hw.gpu.memory.limit"
MEMORY_UTILIZATION = "hw.gpu.memory.utilization"
TEMPERATURE = "hw.temperature"
POWER = "hw.power"
ENERGY = "hw.energy"
THROTTLE = "hw.gpu.throttle"
PROCESS_MEMORY = "hw.gpu.process.memory.usage"

# Metric attributes.
HW_ID = "hw.id"
HW_NAME = "hw.name"
HW_VENDOR = "hw.vendor"
HW_TYPE = "hw.type"
HW_DRIVER = "hw.driver_version"
HW_PARENT = "hw.parent"
GPU_TASK = "hw.gpu.task"
THROTTLE_REASON = "hw.gpu.throttle.reason"
PROCESS_PID = "process.pid"
PROCESS_NAME = "process.executable.name"

# Span attributes set by correlate().
SPAN_UTILIZATION_MEAN = "gpu.utilization.mean"
SPAN_UTILIZATION_MAX = "gpu.utilization.max"
SPAN_MEMORY_USED = "gpu.memory.used"
SPAN_TEMPERATURE_MAX = "gpu.temperature.max"
SPAN_THROTTLED = "gpu.throttled"
SPAN_THROTTLE_REASONS = "gpu.throttle.reasons"
SPAN_SAMPLES = "gpu.sample.count"

#: How many processes per device are reported by ``hw.gpu.process.memory.usage`` (largest first).
TOP_PROCESSES = 5
_MAX_PROCESSES = 64  # per device and sample, kept before grouping by name
#: The ring buffer covers this many seconds of samples (bounded to 16..4096 samples).
HISTORY_S = 600.0

# Clock event ("throttle") reason bits, as NVML defines them (nvmlClocksEventReason*).
THROTTLE_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
#: Reasons that mean the GPU runs slower than it could for the work it has (not idle, not a setting).
THROTTLING = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
     "hw_power_brake_slowdown"}
)  # fmt: skip

# NVML return codes (same values in every NVML version).
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_NEVER_AGAIN = frozenset({_NOT_SUPPORTED, _NO_PERMISSION, _FUNCTION_NOT_FOUND})
# pynvml's error subclasses by name, for an NVMLError that carries no ``value``
_CODES_BY_CLASS = {
    "NVMLError_NotSupported": _NOT_SUPPORTED,
    "NVMLError_NoPermission": _NO_PERMISSION,
    "NVMLError_NotFound": _NOT_FOUND,
    "NVMLError_DriverNotLoaded": _DRIVER_NOT_LOADED,
    "NVMLError_LibraryNotFound": _LIBRARY_NOT_FOUND,
    "NVMLError_FunctionNotFound": _FUNCTION_NOT_FOUND,
}


def _code(exc: BaseException) -> int:
    """NVML return code of an NVMLError (-1 when unknown)."""
    value = getattr(exc, "value", None)
    if isinstance(value, int):
        return value
    return _CODES_BY_CLASS.get(type(exc).__name__, -1)


_MIG_ENABLED = 1

#: Where container images and distributions put the driver's NVML when the dynamic loader
#: does not find ``libnvidia-ml.so.1`` (no ldconfig entry, LD_LIBRARY_PATH not set).
LIBRARY_DIRS: tuple[str, ...] = (
    "/usr/local/nvidia/lib64",  # GKE, k8s device plugin
    "/usr/local/nvidia/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib/wsl/lib",  # WSL2
    "/run/nvidia/driver/usr/lib/x86_64-linux-gnu",  # GPU operator's driver container
)
_NVML_SONAME = "libnvidia-ml.so.1"


@dataclass
class Device:
    """One GPU or MIG device as NVML enumerated it (static facts only)."""

    handle: Any
    hw_id: str
    attributes: dict[str, str]  # hw.* attributes on every metric point of this device
    parent: str | None = None  # the physical GPU's hw.id for a MIG device
    unsupported: set[str] = field(default_factory=set)  # fields never asked for again


@dataclass(frozen=True)
class Reading:
    """What one device reported in one sample; ``None``: NVML could not read it."""

    hw_id: str
    utilization: float | None = None  # 0..1
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    temperature: float | None = None  # Celsius
    power: float | None = None  # watts
    energy: float | None = None  # joules since the driver loaded
    throttle: frozenset[str] | None = None
    processes: tuple[tuple[int, str | None, int], ...] = ()  # (pid, name, bytes), largest first


@dataclass(frozen=True)
class Sample:
    t_ns: int  # time.monotonic_ns() when the sample was taken
    readings: tuple[Reading, ...]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _preload_nvml(dirs: Iterable[str]) -> str | None:
    """Load the driver's NVML from a known directory; return the path that loaded.

    pynvml opens ``libnvidia-ml.so.1`` by name; once a library with that soname is
    loaded, the dynamic loader hands it out for the name, so pynvml finds it.
    """
    for directory in dirs:
        path = os.path.join(directory, _NVML_SONAME)
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
                return path
            except OSError:
                continue
    return None


class Sampler:
    """Reads every device through NVML on one daemon thread; keeps a bounded history.

    ``nvml`` is the ``pynvml`` module. :meth:`open` initialises NVML and lists the
    devices (returns why it cannot), :meth:`start` starts the thread, :meth:`stop`
    stops it and shuts NVML down. :meth:`sample` takes one sample on the caller's
    thread (tests and the first sample use it).
    """

    def __init__(
        self,
        nvml: Any,
        interval: float = 1.0,
        *,
        device: str | None = None,
        library_dirs: Iterable[str] = LIBRARY_DIRS,
    ) -> None:
        self.nvml = nvml
        self.interval = float(interval)
        self.wanted = device
        self.library_dirs = tuple(library_dirs)
        self.capacity = max(16, min(4096, int(HISTORY_S / self.interval) + 1))
        self.devices: list[Device] = []
        self.loaded_from: str | None = None
        self.cpu_ns = 0  # thread CPU time spent in sample(), for docs/gpu.md's cost numbers
        self.sample_count = 0
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._samples: deque[Sample] = deque(maxlen=self.capacity)
        self._thread: threading.Thread | None = None
        self._needs_open = False
        self._names: dict[int, str | None] = {}
        self._util_ids: frozenset[str] = frozenset()
        self._memory_ids: frozenset[str] = frozenset()
        self._chip_ids: frozenset[str] = frozenset()
        self._metric_attrs: dict[str, str] = {}

    # -------------------------------------------------------------- lifecycle

    def open(self) -> str | None:
        """Initialise NVML and enumerate devices; a reason string when there is nothing to do."""
        nvml = self.nvml
        try:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                if _code(exc) != _LIBRARY_NOT_FOUND:
                    raise
                self.loaded_from = _preload_nvml(self.library_dirs)
                if self.loaded_from is None:
                    raise
                nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            code = _code(exc)
            if code == _LIBRARY_NOT_FOUND:
                return (
                    f"no NVIDIA driver found ({_NVML_SONAME} not loadable by name nor from the "
                    "usual driver directories; see 'Containers and driver path' in docs/gpu.md)"
                )
            if code == _DRIVER_NOT_LOADED:
                return "NVIDIA driver not loaded (NVML: Driver Not Loaded)"
            return f"NVML could not be initialised: {exc}"
        devices = self._enumerate(count)
        if not devices:
            self._shutdown_nvml()
            return "no NVIDIA GPU found" if count == 0 else "no readable NVIDIA GPU (no UUID)"
        self.devices = devices
        self._select()
        return None

    def _enumerate(self, count: int) -> list[Device]:
        nvml = self.nvml
        driver = self._optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        devices: list[Device] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except nvml.NVMLError:
                continue  # a GPU NVML cannot identify is skipped (hw.id is required)
            gpu = self._device(handle, uuid, driver, None)
            devices.append(gpu)
            mode = self._optional(lambda h=handle: nvml.nvmlDeviceGetMigMode(h))
            if not mode or int(mode[0]) != _MIG_ENABLED:
                continue
            slots = self._optional(lambda h=handle: int(nvml.nvmlDeviceGetMaxMigDeviceCount(h)))
            for slot in range(slots or 0):
                try:
                    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                    mig_uuid = _text(nvml.nvmlDeviceGetUUID(mig))
                except nvml.NVMLError:
                    continue  # empty slot (NotFound)
                devices.append(self._device(mig, mig_uuid, driver, uuid))
        return devices

    def _device(self, handle: Any, uuid: str, driver: str | None, parent: str | None) -> Device:
        attrs = {HW_ID: uuid, HW_TYPE: "gpu", HW_VENDOR: "NVIDIA"}
        name = self._optional(lambda: _text(self.nvml.nvmlDeviceGetName(handle)))
        if name:
            attrs[HW_NAME] = name
        if driver:
            attrs[HW_DRIVER] = driver
        if parent:
            attrs[HW_PARENT] = parent
        return Device(handle, uuid, attrs, parent)

    def _select(self) -> None:
        """Which devices correlate() summarises, and the hw.id metric_attributes() gives."""
        wanted = self.wanted
        chosen: Device | None = None
        if wanted:
            for i, dev in enumerate(d for d in self.devices if d.parent is None):
                if wanted == str(i):
                    chosen = dev
            chosen = chosen or next((d for d in self.devices if d.hw_id == wanted), None)
            if chosen is None:
                log_once(
                    "gpu:device",
                    logging.WARNING,
                    "platform-otel: PLATFORM_OTEL_GPU_DEVICE=%r matches no GPU (%s); "
                    "using all GPUs",
                    wanted,
                    ", ".join(d.hw_id for d in self.devices),
                )
        top = [d for d in self.devices if d.parent is None]
        if chosen is None and len(top) == 1:
            chosen = top[0]
        everything = frozenset(d.hw_id for d in self.devices)
        whole = frozenset(d.hw_id for d in top)
        if chosen is None:
            # Several GPUs, none selected: utilization of all, memory summed over whole GPUs.
            self._util_ids, self._memory_ids, self._chip_ids = everything, whole, whole
            self._metric_attrs = {}
        elif chosen.parent is None:
            family = {chosen.hw_id} | {d.hw_id for d in self.devices if d.parent == chosen.hw_id}
            self._util_ids = frozenset(family)
            self._memory_ids = self._chip_ids = frozenset({chosen.hw_id})
            self._metric_attrs = {HW_ID: chosen.hw_id}
        else:  # a MIG device: its own utilization and memory; the chip's temperature, throttling
            self._util_ids = self._memory_ids = frozenset({chosen.hw_id})
            self._chip_ids = frozenset({chosen.parent})
            self._metric_attrs = {HW_ID: chosen.hw_id}

    def start(self) -> None:
        """Take a first sample now (so the first export and call have data), then sample on."""
        self._safe_sample()
        self._thread = threading.Thread(
            target=self._loop, name="platform-otel-gpu-sampler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        with self._lock:
            self._samples.clear()
        self._shutdown_nvml()

    def after_fork_in_child(self) -> None:
        """The parent's thread, handles and samples are not the child's: start over."""
        self._reset_runtime()  # new lock: the parent's may have been held at fork time
        self.cpu_ns = self.sample_count = 0
        self.devices = []
        self._needs_open = True
        self._thread = threading.Thread(
            target=self._loop, name="platform-otel-gpu-sampler", daemon=True
        )
        self._thread.start()

    def _shutdown_nvml(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    def _loop(self) -> None:
        if self._needs_open:
            self._reopen()
            self._safe_sample()
        while not self._stop.wait(self.interval):
            if self._needs_open:
                self._reopen()
            self._safe_sample()

    def _reopen(self) -> None:
        self._shutdown_nvml()
        if self.open() is None:
            self._needs_open = False

    def _safe_sample(self) -> None:
        try:
            if not self._needs_open:
                self.sample()
        except Exception:
            report_internal_error("gpu sampler")

    # -------------------------------------------------------------- sampling

    def _optional(self, read: Any) -> Any:
        """A fact NVML may not have (driver version, name, MIG): ``None`` when it cannot tell."""
        try:
            return read()
        except (self.nvml.NVMLError, AttributeError):  # AttributeError: no such function
            return None

    def _read(self, dev: Device, name: str, read: Any, errors: list[int]) -> Any:
        if name in dev.unsupported:
            return None
        try:
            return read()
        except self.nvml.NVMLError as exc:
            code = _code(exc)
            if code in _NEVER_AGAIN:
                dev.unsupported.add(name)
            else:
                errors.append(code)
            return None
        except Exception as exc:
            # AttributeError: an older pynvml without this function. NVMLLibraryMismatchError
            # (not an NVMLError): pynvml's unversioned function needs a newer driver.
            if isinstance(exc, AttributeError) or type(exc).__name__ == "NVMLLibraryMismatchError":
                dev.unsupported.add(name)
                return None
            raise

    def sample(self) -> Sample:
        """Read every device once, append the sample to the history and return it."""
        cpu0 = time.thread_time_ns()
        nvml = self.nvml
        errors: list[int] = []
        readings: list[Reading] = []
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        for dev in self.devices:
            h = dev.handle
            util = self._read(
                dev, "util", lambda h=h: nvml.nvmlDeviceGetUtilizationRates(h), errors
            )
            mem = self._read(dev, "memory", lambda h=h: nvml.nvmlDeviceGetMemoryInfo(h), errors)
            temp = self._read(
                dev, "temp", lambda h=h: nvml.nvmlDeviceGetTemperature(h, sensor), errors
            )
            power = self._read(dev, "power", lambda h=h: nvml.nvmlDeviceGetPowerUsage(h), errors)
            energy = self._read(
                dev, "energy", lambda h=h: nvml.nvmlDeviceGetTotalEnergyConsumption(h), errors
            )
            throttle = self._throttle(dev, errors)
            procs = self._processes(dev, errors)
            readings.append(
                Reading(
                    hw_id=dev.hw_id,
                    utilization=None if util is None else int(util.gpu) / 100.0,
                    memory_used=None if mem is None else int(mem.used),
                    memory_total=None if mem is None or not mem.total else int(mem.total),
                    temperature=None if temp is None else float(temp),
                    power=None if power is None else int(power) / 1000.0,  # mW, true division
                    energy=None if energy is None else int(energy) / 1000.0,  # mJ
                    throttle=throttle,
                    processes=self._top_processes(procs),
                )
            )
        sample = Sample(time.monotonic_ns(), tuple(readings))
        with self._lock:
            self._samples.append(sample)
        if errors and self._all_failed(readings):
            # Driver gone, GPU lost, NVML uninitialised (e.g. handles from before a fork).
            log_once(
                "gpu:failing",
                logging.WARNING,
                "platform-otel: NVML reads fail (error codes %s); GPU metrics are paused "
                "and NVML is re-initialised every %.3g s until it answers",
                sorted(set(errors)),
                self.interval,
            )
            self._needs_open = True
        self.sample_count += 1
        self.cpu_ns += time.thread_time_ns() - cpu0
        return sample

    @staticmethod
    def _all_failed(readings: Iterable[Reading]) -> bool:
        return all(
            r.utilization is None
            and r.memory_used is None
            and r.temperature is None
            and r.power is None
            and r.throttle is None
            for r in readings
        )

    def _throttle(self, dev: Device, errors: list[int]) -> frozenset[str] | None:
        nvml = self.nvml
        h = dev.handle
        # nvidia-ml-py 12.535+ calls them "clocks event reasons"; older ones only "throttle".
        mask = self._read(
            dev, "throttle", lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(h), errors
        )
        if mask is None and "throttle" in dev.unsupported and "throttle_old" not in dev.unsupported:
            mask = self._read(
                dev,
                "throttle_old",
                lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h),
                errors,
            )
        if mask is None:
            return None
        return frozenset(name for bit, name in THROTTLE_REASONS.items() if int(mask) & bit)

    def _processes(self, dev: Device, errors: list[int]) -> Any:
        nvml = self.nvml
        h = dev.handle
        procs = self._read(
            dev, "processes", lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h), errors
        )
        if procs is None and "processes" in dev.unsupported:
            # Older drivers lack the _v3 call that pynvml's unversioned name uses.
            procs = self._read(
                dev,
                "processes_v2",
                lambda: nvml.nvmlDeviceGetComputeRunningProcesses_v2(h),
                errors,
            )
        return procs

    def _top_processes(self, procs: Any) -> tuple[tuple[int, str | None, int], ...]:
        if not procs:
            return ()
        known = []
        for p in procs:
            pid, used = getattr(p, "pid", None), getattr(p, "usedGpuMemory", None)
            if isinstance(pid, int) and isinstance(used, int):  # None: not available (WDDM)
                known.append((pid, used))
        known.sort(key=lambda item: -item[1])
        return tuple((pid, self._process_name(pid), used) for pid, used in known[:_MAX_PROCESSES])

    def _process_name(self, pid: int) -> str | None:
        if pid in self._names:
            return self._names[pid]
        if len(self._names) >= 256:
            self._names.clear()
        name: str | None = None
        try:
            name = os.path.basename(_text(self.nvml.nvmlSystemGetProcessName(pid))) or None
        except Exception:
            try:  # NVML often cannot see other PID namespaces; /proc can for our own
                with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
                    name = f.read().strip() or None
            except OSError:
                name = None
        self._names[pid] = name
        return name

    # -------------------------------------------------------------- reading back

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def latest(self) -> Sample | None:
        """The newest sample, if it is recent (a stalled sampler reports nothing, not old data)."""
        with self._lock:
            sample = self._samples[-1] if self._samples else None
        if sample is None or self._stop.is_set():
            return None
        max_age = max(3 * self.interval, 5.0) * 1e9
        return sample if time.monotonic_ns() - sample.t_ns <= max_age else None

    def device_attributes(self) -> dict[str, dict[str, str]]:
        return {d.hw_id: d.attributes for d in self.devices}

    def metric_attributes(self) -> dict[str, str]:
        return dict(self._metric_attrs)

    def summary(self, start_ns: int, end_ns: int) -> dict[str, AttributeValue]:
        """Span attributes for the GPU state during [start_ns, end_ns] (monotonic ns)."""
        if end_ns < start_ns:
            start_ns, end_ns = end_ns, start_ns
        inside: list[Sample] = []
        before: Sample | None = None  # newest sample older than the call
        after: Sample | None = None  # oldest sample newer than the call
        with self._lock:  # newest first; stop at the first sample before the call: O(call)
            for sample in reversed(self._samples):
                if sample.t_ns > end_ns:
                    after = sample
                elif sample.t_ns >= start_ns:
                    inside.append(sample)
                else:
                    before = sample
                    break
        if not inside:
            # A call shorter than the interval: the nearest sample, if it is close enough.
            limit = 1.5 * self.interval * 1e9
            gaps = [
                (start_ns - s.t_ns if s is before else s.t_ns - end_ns, s)
                for s in (before, after)
                if s is not None
            ]
            gap, nearest = min(gaps, key=lambda g: g[0], default=(0, None))
            if nearest is not None and gap <= limit:
                inside = [nearest]
        if not inside:
            return {}
        utils: list[float] = []
        temps: list[float] = []
        memory: list[int] = []
        reasons: set[str] = set()
        throttle_known = False
        for sample in inside:
            used_now: int | None = None
            for r in sample.readings:
                if r.utilization is not None and r.hw_id in self._util_ids:
                    utils.append(r.utilization)
                if r.memory_used is not None and r.hw_id in self._memory_ids:
                    used_now = (used_now or 0) + r.memory_used
                if r.hw_id in self._chip_ids:
                    if r.temperature is not None:
                        temps.append(r.temperature)
                    if r.throttle is not None:
                        throttle_known = True
                        reasons |= r.throttle - {"gpu_idle"}
            if used_now is not None:
                memory.append(used_now)
        out: dict[str, AttributeValue] = {SPAN_SAMPLES: len(inside)}
        if self._metric_attrs:
            out[HW_ID] = self._metric_attrs[HW_ID]
        if utils:
            out[SPAN_UTILIZATION_MEAN] = round(sum(utils) / len(utils), 4)
            out[SPAN_UTILIZATION_MAX] = max(utils)
        if memory:
            out[SPAN_MEMORY_USED] = max(memory)
        if temps:
            out[SPAN_TEMPERATURE_MAX] = max(temps)
        if throttle_known:
            out[SPAN_THROTTLED] = bool(reasons & THROTTLING)
            if reasons:
                out[SPAN_THROTTLE_REASONS] = tuple(sorted(reasons))
        return out


# --------------------------------------------------------------------------- instruments


def _observations(sampler: Sampler) -> Iterator[tuple[Reading, dict[str, str]]]:
    sample = sampler.latest()
    if sample is None:
        return
    attrs = sampler.device_attributes()
    for reading in sample.readings:
        yield reading, attrs.get(reading.hw_id, {HW_ID: reading.hw_id})


def register_instruments(meter: Meter, sampler: Sampler) -> None:
    """Create the observable instruments; each callback reads ``sampler``'s newest sample."""
    from opentelemetry.metrics import Observation

    def from_reading(pick: Any, extra: Mapping[str, str] | None = None) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            out = []
            try:
                for reading, attrs in _observations(sampler):
                    value = pick(reading)
                    if value is not None:
                        out.append(Observation(value, {**attrs, **(extra or {})}))
            except Exception:
                report_internal_error("gpu metrics callback")
            return out

        return callback

    @guard("gpu metrics callback", default=())
    def throttle(_options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for reading, attrs in _observations(sampler):
            if reading.throttle is None:
                continue
            for reason in THROTTLE_REASONS.values():
                value = 1 if reason in reading.throttle else 0
                out.append(Observation(value, {**attrs, THROTTLE_REASON: reason}))
        return out

    @guard("gpu metrics callback", default=())
    def processes(_options: CallbackOptions) -> Iterable[Observation]:
        # Keyed by process name, not pid: the SDK keeps every attribute set it has seen for
        # the life of the process (up to 2000, then one overflow series), and pids churn.
        out = []
        for reading, attrs in _observations(sampler):
            groups: dict[tuple[str, str | int], int] = {}
            for pid, name, used in reading.processes:
                key: tuple[str, str | int] = (PROCESS_NAME, name) if name else (PROCESS_PID, pid)
                groups[key] = groups.get(key, 0) + used
            top = sorted(groups.items(), key=lambda item: -item[1])[:TOP_PROCESSES]
            for (key_name, key_value), used in top:
                out.append(Observation(used, {HW_ID: attrs[HW_ID], key_name: key_value}))
        return out

    meter.create_observable_gauge(
        UTILIZATION,
        [from_reading(lambda r: r.utilization, {GPU_TASK: "general"})],
        unit="1",
        description="Fraction of time the GPU was busy over the last sample period (0..1)",
    )
    # UpDownCounters, as the hardware conventions define the two memory metrics.
    meter.create_observable_up_down_counter(
        MEMORY_USAGE,
        [from_reading(lambda r: r.memory_used)],
        unit="By",
        description="GPU memory used",
    )
    meter.create_observable_up_down_counter(
        MEMORY_LIMIT,
        [from_reading(lambda r: r.memory_total)],
        unit="By",
        description="GPU memory size",
    )
    meter.create_observable_gauge(
        MEMORY_UTILIZATION,
        [
            from_reading(
                lambda r: (
                    None
                    if r.memory_used is None or not r.memory_total
                    else r.memory_used / r.memory_total
                )
            )
        ],
        unit="1",
        description="Fraction of GPU memory used (0..1)",
    )
    meter.create_observable_gauge(
        TEMPERATURE,
        [from_reading(lambda r: r.temperature)],
        unit="Cel",
        description="GPU temperature",
    )
    meter.create_observable_gauge(
        POWER, [from_reading(lambda r: r.power)], unit="W", description="GPU power draw"
    )
    meter.create_observable_counter(
        ENERGY,
        [from_reading(lambda r: r.energy)],
        unit="J",
        description="Energy the GPU consumed since the driver was loaded",
    )
    meter.create_observable_gauge(
        THROTTLE,
        [throttle],
        unit="1",
        description="1 while the GPU's clocks are held down for this reason, else 0",
    )
    meter.create_observable_up_down_counter(  # like hw.gpu.memory.usage
        PROCESS_MEMORY,
        [processes],
        unit="By",
        description=f"GPU memory held by the processes of one name (the {TOP_PROCESSES} largest per device)",
    )


# --------------------------------------------------------------------------- contract


@dataclass
class _State:
    sampler: Sampler


_state: _State | None = None


def _after_fork_in_child() -> None:
    """Called in a forked child by ``init()``'s one at-fork hook (``_telemetry``)."""
    state = _state
    if state is not None:
        try:
            state.sampler.after_fork_in_child()
        except Exception:
            report_internal_error("gpu after fork")


def instrument(ctx: InstrumentationContext) -> str | None:
    """Start the sampler and the GPU instruments; a reason string when there is no GPU."""
    global _state
    if _state is not None:
        return None
    import pynvml

    settings = ctx.settings
    sampler_ = Sampler(
        pynvml,
        settings.gpu_interval,
        device=settings.gpu_device,
    )
    reason = sampler_.open()
    if reason:
        return f"{reason}; GPU metrics are off"
    register_instruments(ctx.meter_provider.get_meter("platform_otel.gpu", __version__), sampler_)
    sampler_.start()
    _state = _State(sampler_)
    return None


def uninstrument() -> None:
    global _state
    state, _state = _state, None
    if state is not None:
        state.sampler.stop()


def sampler() -> Sampler | None:
    """The running sampler (``None`` when the integration is off)."""
    return _state.sampler if _state is not None else None


def correlate(start_ns: int, end_ns: int) -> dict[str, AttributeValue]:
    """Span attributes summarising the GPU during [start_ns, end_ns] of ``time.monotonic_ns()``.

    Mean and max utilization, the most memory used, the highest temperature and
    whether the GPU was throttled, over the samples taken in the window (the
    nearest one for a call shorter than the sampling interval). ``{}`` when the
    integration is off or no sample is close enough.
    """
    state = _state
    if state is None:
        return {}
    try:
        return state.sampler.summary(start_ns, end_ns)
    except Exception:
        report_internal_error("gpu correlate")
        return {}


def metric_attributes() -> dict[str, str]:
    """Bounded attributes to slice latency histograms by GPU: ``{"hw.id": ...}`` or ``{}``.

    ``hw.id`` is given when exactly one GPU is present or ``PLATFORM_OTEL_GPU_DEVICE``
    selects one; with several GPUs and none selected, a call cannot be pinned to one.
    """
    state = _state
    return state.sampler.metric_attributes() if state is not None else {}
