"""Ollama model residency: which models are loaded, and how much of each sits in GPU memory.

Why: a model that no longer fits in VRAM runs partly on the CPU and is the most
common cause of a slow Ollama call, yet nothing in a call's response says so.
``GET /api/ps`` does: it lists each loaded model with ``size`` (bytes) and
``size_vram`` (bytes in GPU memory). :class:`ResidencyPoller` polls it at a low
rate on a daemon thread and exports

* ``ollama.model.vram.ratio`` (gauge, ``1``): ``size_vram / size`` per loaded model,
* ``ollama.model.size`` and ``ollama.model.vram.size`` (gauges, ``By``),
* ``ollama.up`` (gauge, 1 when the last poll answered, else 0),

with the attributes ``gen_ai.request.model`` (the name ``/api/ps`` reports, e.g.
``llama3.2:latest``), ``server.address`` and ``server.port``. The Ollama
integration reads :meth:`ResidencyPoller.lookup` to put the ratio on each call's
span; the ``platform-otel`` monitor subcommand reuses the class for services that
call Ollama from other languages.

Bounded: one thread per poller, at most :data:`MAX_MODELS` models kept, a 2 s
HTTP timeout, and an on-demand refresh (a lookup that misses) at most once per
:data:`MIN_REFRESH_S`. Fork-safe: a forked child starts with an empty snapshot
and no thread; the next :meth:`~ResidencyPoller.start` starts one there.
The poll runs with instrumentation suppressed, so it never shows up as an HTTP
client span of the application.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._safety import log_once, report_internal_error

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = [
    "MAX_MODELS",
    "MODEL_SIZE",
    "MODEL_VRAM_RATIO",
    "MODEL_VRAM_SIZE",
    "UP",
    "ModelResidency",
    "ResidencyPoller",
    "normalize_model",
    "server_of",
]

MODEL_VRAM_RATIO = "ollama.model.vram.ratio"
MODEL_SIZE = "ollama.model.size"
MODEL_VRAM_SIZE = "ollama.model.vram.size"
UP = "ollama.up"

MAX_MODELS = 64  # models kept per server (a real server holds a handful)
MIN_REFRESH_S = 1.0  # on-demand refreshes at most this often
_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ModelResidency:
    """One model as ``/api/ps`` reported it."""

    name: str
    size: int
    size_vram: int

    @property
    def vram_ratio(self) -> float:
        return (self.size_vram / self.size) if self.size > 0 else 0.0


def normalize_model(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest`` (Ollama's own default tag); tagged names unchanged."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def server_of(base_url: str) -> tuple[str, int]:
    """(host, port) of an Ollama base URL, with the scheme's default port."""
    parsed = urllib.parse.urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.hostname or "127.0.0.1", port


class ResidencyPoller:
    """Polls ``{base_url}/api/ps`` every ``interval_s`` seconds on a daemon thread.

    ``start()`` is idempotent (cheap enough to call on every LLM call) and
    restarts the thread in a forked child; ``stop()`` ends it and removes this
    server's series from the gauges.
    """

    def __init__(self, base_url: str, meter: Meter, interval_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.address, self.port = server_of(self.base_url)
        self.interval_s = max(float(interval_s), 0.05)
        self._models: dict[str, ModelResidency] = {}
        self._up: bool | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._last_wake = 0.0
        self._gauges = _gauges_for(meter)
        self._gauges.pollers.add(self)
        _all_pollers.add(self)

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Start polling (no-op when already running in this process)."""
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._stopped.clear()
            self._pid = os.getpid()
            self._gauges.pollers.add(self)
            thread = threading.Thread(
                target=self._run, name=f"platform-otel-ollama-ps {self.address}", daemon=True
            )
            self._thread = thread
        thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling and stop reporting this server's series."""
        self._stopped.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        self._gauges.pollers.discard(self)  # the one set it joins (__init__, start)
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    def lookup(self, model: str) -> float | None:
        """VRAM share (0..1) of ``model`` in the last snapshot; None when it was not loaded.

        A miss asks the thread for an early refresh (at most once per second), so
        a model loaded by this very call is known by the next one.
        """
        entry = self._models.get(normalize_model(model))
        if entry is None:
            now = time.monotonic()
            if now - self._last_wake >= MIN_REFRESH_S and self._thread is not None:
                self._last_wake = now
                self._wake.set()
            return None
        return entry.vram_ratio

    @property
    def up(self) -> bool | None:
        """Whether the last poll answered (None before the first poll)."""
        return self._up

    def models(self) -> dict[str, ModelResidency]:
        """The last snapshot, by model name."""
        return dict(self._models)

    def poll_once(self) -> bool:
        """One ``GET /api/ps`` now; updates the snapshot and ``up``. Never raises."""
        try:
            models = self._fetch()
        except (OSError, ValueError) as exc:  # refused, timeout, HTTP error, bad JSON
            if self._up is not False:
                log_once(
                    f"ollama-ps-down:{self.base_url}",
                    logging.INFO,
                    "platform-otel: Ollama at %s does not answer /api/ps (%s); "
                    "residency metrics report ollama.up=0 until it does",
                    self.base_url,
                    exc,
                )
            self._up = False
            self._models = {}
            return False
        except Exception:
            report_internal_error("ollama /api/ps poll")
            return False
        self._up = True
        self._models = models
        return True

    # ------------------------------------------------------------------ internals

    def _fetch(self) -> dict[str, ModelResidency]:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        request = urllib.request.Request(
            f"{self.base_url}/api/ps", headers={"Accept": "application/json"}
        )
        with (
            suppress_instrumentation(),
            urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response,
        ):
            body = json.loads(response.read(4 * 1024 * 1024))
        models: dict[str, ModelResidency] = {}
        for item in body.get("models") or ():
            if len(models) >= MAX_MODELS or not isinstance(item, dict):
                break
            name = item.get("model") or item.get("name")
            size, vram = item.get("size"), item.get("size_vram")
            if isinstance(name, str) and isinstance(size, int) and isinstance(vram, int):
                models[normalize_model(name)] = ModelResidency(name, size, vram)
        return models

    def _run(self) -> None:
        while not self._stopped.is_set():
            attempted = time.monotonic()
            self.poll_once()
            woken = self._wake.wait(self.interval_s)
            self._wake.clear()
            if woken and not self._stopped.is_set():
                # an early wake (a lookup miss) still keeps the minimum gap between polls
                gap = min(MIN_REFRESH_S, self.interval_s) - (time.monotonic() - attempted)
                if gap > 0:
                    self._stopped.wait(gap)

    def _after_fork(self) -> None:
        self._thread = None
        self._models = {}
        self._up = None
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def _attributes(self) -> dict[str, Any]:
        return {"server.address": self.address, "server.port": self.port}

    def _observe(self, which: str) -> Iterator[tuple[float, dict[str, Any]]]:
        if which == UP:
            if self._up is not None:
                yield (1 if self._up else 0), self._attributes()
            return
        for entry in list(self._models.values()):
            attrs = {"gen_ai.request.model": entry.name, **self._attributes()}
            if which == MODEL_VRAM_RATIO:
                yield entry.vram_ratio, attrs
            elif which == MODEL_SIZE:
                yield entry.size, attrs
            else:
                yield entry.size_vram, attrs


# ---------------------------------------------------------------------- gauges per meter


class _Gauges:
    """The four observable gauges of one meter, reporting every live poller on it.

    One set per meter: several pollers (several Ollama servers) share the
    instruments instead of registering the same names twice.
    """

    def __init__(self, meter: Meter) -> None:
        self.pollers: weakref.WeakSet[ResidencyPoller] = weakref.WeakSet()
        meter.create_observable_gauge(
            MODEL_VRAM_RATIO,
            callbacks=[self._callback(MODEL_VRAM_RATIO)],
            unit="1",
            description="Share of a loaded Ollama model that is in GPU memory (size_vram / size).",
        )
        meter.create_observable_gauge(
            MODEL_SIZE,
            callbacks=[self._callback(MODEL_SIZE)],
            unit="By",
            description="Memory a loaded Ollama model takes (GET /api/ps size).",
        )
        meter.create_observable_gauge(
            MODEL_VRAM_SIZE,
            callbacks=[self._callback(MODEL_VRAM_SIZE)],
            unit="By",
            description="GPU memory a loaded Ollama model takes (GET /api/ps size_vram).",
        )
        meter.create_observable_gauge(
            UP,
            callbacks=[self._callback(UP)],
            unit="",  # no unit: with "1" Prometheus would render ollama_up
            description="1 when the Ollama server answered the last /api/ps poll, else 0.",
        )

    def _callback(self, which: str) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            from opentelemetry.metrics import Observation

            out: list[Observation] = []
            try:
                for poller in list(self.pollers):
                    for value, attrs in poller._observe(which):
                        out.append(Observation(value, attrs))
            except Exception:
                report_internal_error("ollama residency gauges")
            return out

        return callback


_meter_gauges: dict[int, _Gauges] = {}
_meters: dict[int, Any] = {}  # keeps the meter alive so its id is not reused
_gauges_lock = threading.Lock()
_all_pollers: weakref.WeakSet[ResidencyPoller] = weakref.WeakSet()


def _gauges_for(meter: Meter) -> _Gauges:
    with _gauges_lock:
        gauges = _meter_gauges.get(id(meter))
        if gauges is None:
            if len(_meter_gauges) >= 16:  # providers replaced many times (tests): forget the oldest
                oldest = next(iter(_meter_gauges))
                _meter_gauges.pop(oldest)
                _meters.pop(oldest, None)
            gauges = _meter_gauges[id(meter)] = _Gauges(meter)
            _meters[id(meter)] = meter
        return gauges


def _reset_after_fork() -> None:
    global _gauges_lock
    _gauges_lock = threading.Lock()
    for poller in list(_all_pollers):
        poller._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)
