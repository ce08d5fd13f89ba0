"""A stand-in for nvidia-ml-py's ``pynvml``, put first on ``sys.path`` by the GPU tests.

It has the real module's function names, return shapes (objects with ``.gpu``,
``.total``, ``.pid``, ``.usedGpuMemory``; strings for names and UUIDs; milliwatts,
millijoules) and its error types: ``NVMLError(code)`` returns the subclass for
that code (``NVMLError_NotSupported``, ``NVMLError_LibraryNotFound``, ...), built
the way ``pynvml._extractNVMLErrorsAsClasses`` builds them. Function names were
checked against nvidia-ml-py 13.615.71 (``tests/test_gpu.py`` compares them with
the installed real module).

The machine it pretends to be is a JSON scenario: the file named by
``FAKE_PYNVML_SCENARIO`` (re-read when it changes, so a test can change the GPU
state of a running subprocess), or a dict given to :func:`configure` in-process::

    {"driver": "550.54.15", "init_error": null,
     "devices": [{"uuid": "GPU-...", "name": "NVIDIA A100", "util": 40, "mem_util": 10,
                  "mem_total": 1000, "mem_used": 250, "temp": 61, "power_mw": 123456,
                  "energy_mj": 5000000, "throttle": 4, "processes": [[pid, bytes, name]],
                  "unsupported": ["power"], "errors": {"temp": "GpuIsLost"},
                  "mig": [{"uuid": "MIG-...", "mem_total": 500, "mem_used": 100}]}]}

``init_error`` makes ``nvmlInit`` raise (``LibraryNotFound``, ``DriverNotLoaded``);
``unsupported`` fields raise ``NVMLError_NotSupported``; ``errors`` maps a field to
the error it raises now. Like the real library, handles are only valid in the
process that called ``nvmlInit``: a handle used in a forked child that did not
initialise again raises ``NVMLError_Uninitialized``. ``CALLS`` counts calls per
function name (per process).
"""

from __future__ import annotations

import collections
import json
import os
import string
import threading
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0x0
NVML_DEVICE_MIG_ENABLE = 0x1

nvmlClocksEventReasonGpuIdle = 0x0000000000000001
nvmlClocksEventReasonApplicationsClocksSetting = 0x0000000000000002
nvmlClocksEventReasonSwPowerCap = 0x0000000000000004
nvmlClocksEventReasonHwSlowdown = 0x0000000000000008
nvmlClocksEventReasonSyncBoost = 0x0000000000000010
nvmlClocksEventReasonSwThermalSlowdown = 0x0000000000000020
nvmlClocksEventReasonHwThermalSlowdown = 0x0000000000000040
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x0000000000000080
nvmlClocksEventReasonDisplayClockSetting = 0x0000000000000100
nvmlClocksEventReasonNone = 0x0000000000000000
nvmlClocksThrottleReasonGpuIdle = nvmlClocksEventReasonGpuIdle
nvmlClocksThrottleReasonSwPowerCap = nvmlClocksEventReasonSwPowerCap
nvmlClocksThrottleReasonHwSlowdown = nvmlClocksEventReasonHwSlowdown
nvmlClocksThrottleReasonSwThermalSlowdown = nvmlClocksEventReasonSwThermalSlowdown
nvmlClocksThrottleReasonHwThermalSlowdown = nvmlClocksEventReasonHwThermalSlowdown
nvmlClocksThrottleReasonNone = nvmlClocksEventReasonNone

FAKE = True  # lets a test assert it imported the stand-in, not the real module


class NVMLLibraryMismatchError(Exception):
    """Raised (not an NVMLError) by unversioned functions the loaded driver lacks."""


class NVMLError(Exception):
    _valClassMapping: dict[int, type[NVMLError]] = {}
    _errcode_to_string = {
        NVML_ERROR_UNINITIALIZED: "Uninitialized",
        NVML_ERROR_NOT_SUPPORTED: "Not Supported",
        NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
        NVML_ERROR_NOT_FOUND: "Not Found",
        NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
        NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
        NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        NVML_ERROR_UNKNOWN: "Unknown Error",
    }
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return self._errcode_to_string.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


def _extractNVMLErrorsAsClasses() -> None:
    namespace = globals()  # the real module uses sys.modules[__name__]; this works unregistered
    for err_name in [x for x in list(namespace) if x.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(
            err_name.replace("NVML_ERROR_", ""), "_"
        ).replace("_", "")
        err_val = namespace[err_name]

        def gen_new(val: int) -> Any:
            def new(typ: type, *args: Any) -> NVMLError:
                return NVMLError.__new__(typ, val)

            return new

        cls = type(class_name, (NVMLError,), {"__new__": gen_new(err_val)})
        cls.__module__ = __name__
        namespace[class_name] = cls
        NVMLError._valClassMapping[err_val] = cls


_extractNVMLErrorsAsClasses()


class nvmlFriendlyObject:
    def __init__(self, dictionary: dict[str, Any]) -> None:
        for key, value in dictionary.items():
            setattr(self, key, value)


# --------------------------------------------------------------------------- state

CALLS: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_given: dict[str, Any] | None = None
_file_cache: tuple[float, dict[str, Any]] | None = None
_init_pid: int | None = None
_refcount = 0


def configure(scenario: dict[str, Any] | None) -> None:
    """Set the scenario in-process (``None``: use ``FAKE_PYNVML_SCENARIO`` again)."""
    global _given
    _given = scenario


def reset() -> None:
    """Forget initialisation and call counts (between in-process tests)."""
    global _init_pid, _refcount
    _init_pid, _refcount = None, 0
    CALLS.clear()


def _scenario() -> dict[str, Any]:
    global _file_cache
    if _given is not None:
        return _given
    path = os.environ.get("FAKE_PYNVML_SCENARIO")
    if not path:
        return {"init_error": "LibraryNotFound"}
    mtime = os.stat(path).st_mtime_ns
    if _file_cache is None or _file_cache[0] != mtime:
        with open(path, encoding="utf-8") as f:
            _file_cache = (mtime, json.load(f))
    return _file_cache[1]


def _raise(name: str) -> None:
    raise globals()[f"NVMLError_{name}"]()


class _Handle:
    """What ``nvmlDeviceGetHandleByIndex`` returns (the real one is a ctypes pointer)."""

    def __init__(self, index: int, mig: int | None, pid: int) -> None:
        self.index, self.mig, self.pid = index, mig, pid

    def __repr__(self) -> str:
        return f"<fake nvmlDevice {self.index}{'' if self.mig is None else f'/mig{self.mig}'}>"


def _called(name: str) -> None:
    CALLS[name] += 1
    if _init_pid != os.getpid():
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def _device(handle: _Handle, field: str) -> dict[str, Any]:
    """The scenario entry for ``handle``; raises what the scenario says ``field`` raises."""
    if handle.pid != os.getpid():
        raise NVMLError(NVML_ERROR_UNINITIALIZED)  # handle from before a fork
    devices = _scenario().get("devices", [])
    if handle.index >= len(devices):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    dev = devices[handle.index]
    if handle.mig is not None:
        dev = {**dev.get("mig", [])[handle.mig], "mig_parent": dev}
        dev.setdefault("unsupported", ["util", "temp", "power", "energy", "throttle", "mig_mode"])
    error = dev.get("errors", {}).get(field)
    if error:
        _raise(error)
    if field in dev.get("unsupported", ()):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return dev


# --------------------------------------------------------------------------- API


def nvmlInitWithFlags(flags: int) -> None:
    global _init_pid, _refcount
    CALLS["nvmlInit"] += 1
    error = _scenario().get("init_error")
    if error:
        _raise(error)
    with _lock:
        if _init_pid != os.getpid():
            _refcount = 0
        _init_pid = os.getpid()
        _refcount += 1


def nvmlInit() -> None:
    nvmlInitWithFlags(0)


def nvmlShutdown() -> None:
    global _refcount, _init_pid
    _called("nvmlShutdown")
    with _lock:
        _refcount = max(0, _refcount - 1)
        if _refcount == 0:
            _init_pid = None


def nvmlSystemGetDriverVersion() -> str:
    _called("nvmlSystemGetDriverVersion")
    driver = _scenario().get("driver")
    if driver is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return str(driver)


def nvmlSystemGetProcessName(pid: int) -> str:
    _called("nvmlSystemGetProcessName")
    for dev in _scenario().get("devices", []):
        for entry in [
            *dev.get("processes", ()),
            *[p for m in dev.get("mig", []) for p in m.get("processes", ())],
        ]:
            if entry[0] == pid and len(entry) > 2 and entry[2]:
                return str(entry[2])
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetCount() -> int:
    _called("nvmlDeviceGetCount")
    return len(_scenario().get("devices", []))


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    _called("nvmlDeviceGetHandleByIndex")
    if index >= len(_scenario().get("devices", [])):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(index, None, os.getpid())


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    _called("nvmlDeviceGetUUID")
    return str(_device(handle, "uuid")["uuid"])


def nvmlDeviceGetName(handle: _Handle) -> str:
    _called("nvmlDeviceGetName")
    dev = _device(handle, "name")
    return str(dev.get("name") or dev.get("mig_parent", {}).get("name", "NVIDIA GPU"))


def nvmlDeviceGetUtilizationRates(handle: _Handle) -> nvmlFriendlyObject:
    _called("nvmlDeviceGetUtilizationRates")
    dev = _device(handle, "util")
    return nvmlFriendlyObject({"gpu": int(dev["util"]), "memory": int(dev.get("mem_util", 0))})


def nvmlDeviceGetMemoryInfo(handle: _Handle, version: int | None = None) -> nvmlFriendlyObject:
    _called("nvmlDeviceGetMemoryInfo")
    dev = _device(handle, "memory")
    total, used = int(dev["mem_total"]), int(dev["mem_used"])
    return nvmlFriendlyObject({"total": total, "free": total - used, "used": used})


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    _called("nvmlDeviceGetTemperature")
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return int(_device(handle, "temp")["temp"])


def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
    _called("nvmlDeviceGetPowerUsage")
    return int(_device(handle, "power")["power_mw"])  # milliwatts


def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
    _called("nvmlDeviceGetTotalEnergyConsumption")
    return int(_device(handle, "energy")["energy_mj"])  # millijoules since driver load


def nvmlDeviceGetCurrentClocksEventReasons(handle: _Handle) -> int:
    _called("nvmlDeviceGetCurrentClocksEventReasons")
    return int(_device(handle, "throttle").get("throttle", 0))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: _Handle) -> int:
    _called("nvmlDeviceGetCurrentClocksThrottleReasons")
    return int(_device(handle, "throttle").get("throttle", 0))


def _processes(handle: _Handle, field: str) -> list[nvmlFriendlyObject]:
    dev = _device(handle, field)
    return [
        nvmlFriendlyObject(
            {
                "pid": int(p[0]),
                "usedGpuMemory": p[1],
                "gpuInstanceId": 0xFFFFFFFF,
                "computeInstanceId": 0xFFFFFFFF,
            }
        )
        for p in dev.get("processes", ())
    ]


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[nvmlFriendlyObject]:
    _called("nvmlDeviceGetComputeRunningProcesses")
    if "processes_v3" in _device(handle, "processes").get("unsupported", ()):
        raise NVMLLibraryMismatchError(  # what pynvml raises on an older driver
            "Unversioned function called and the pyNVML version does not match the NVML "
            "lib version."
        )
    return _processes(handle, "processes")


def nvmlDeviceGetComputeRunningProcesses_v2(handle: _Handle) -> list[nvmlFriendlyObject]:
    _called("nvmlDeviceGetComputeRunningProcesses_v2")
    return _processes(handle, "processes_v2")


def nvmlDeviceGetGraphicsRunningProcesses(handle: _Handle) -> list[nvmlFriendlyObject]:
    _called("nvmlDeviceGetGraphicsRunningProcesses")
    return []


def nvmlDeviceGetMigMode(device: _Handle) -> list[int]:
    _called("nvmlDeviceGetMigMode")
    dev = _device(device, "mig_mode")
    mode = NVML_DEVICE_MIG_ENABLE if dev.get("mig") else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetMaxMigDeviceCount(device: _Handle) -> int:
    _called("nvmlDeviceGetMaxMigDeviceCount")
    return 7 if _device(device, "mig_mode").get("mig") else 0


def nvmlDeviceGetMigDeviceHandleByIndex(device: _Handle, index: int) -> _Handle:
    _called("nvmlDeviceGetMigDeviceHandleByIndex")
    if index >= len(_device(device, "mig_mode").get("mig", [])):
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _Handle(device.index, index, os.getpid())


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice: _Handle) -> _Handle:
    _called("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
    return _Handle(migDevice.index, None, migDevice.pid)


def nvmlDeviceIsMigDeviceHandle(device: _Handle) -> int:
    _called("nvmlDeviceIsMigDeviceHandle")
    return int(device.mig is not None)
