"""Ollama model residency from ``GET /api/ps``: how much of each loaded model is in VRAM.

A model only partly in GPU memory (``size_vram < size``) runs its remaining
layers on the CPU: the most common reason an Ollama call is slow. Ollama has no
metrics endpoint, so this polls ``/api/ps`` at a low rate on one daemon thread
and exports what it lists as gauges; :meth:`ResidencyPoller.lookup` gives a
model's ratio to put on the span of a call to it.

Contract shared with the Ollama integration (``instrumentation/ollama.py``) and
``platform-otel monitor``: ``ResidencyPoller(base_url, meter, interval_s)`` with
``start()``, ``stop()`` and ``lookup(model) -> float | None``; gauges
``ollama.model.vram.ratio``, ``ollama.model.size``, ``ollama.model.vram.size``
and ``ollama.up`` (docs/telemetry.md). It uses ``urllib``, not httpx, so
polling never shows up as client spans of the application.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._safety import forget, log_once, report_internal_error

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = ["ResidencyPoller"]

VRAM_RATIO = "ollama.model.vram.ratio"
MODEL_SIZE = "ollama.model.size"
VRAM_SIZE = "ollama.model.vram.size"
UP = "ollama.up"
MODEL = "gen_ai.request.model"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
MAX_MODELS = 64  # bound on the series per server (Ollama keeps a handful loaded)


@dataclass(frozen=True)
class Model:
    name: str
    size: int
    size_vram: int

    @property
    def ratio(self) -> float | None:
        return self.size_vram / self.size if self.size > 0 else None


class ResidencyPoller:
    """Polls ``{base_url}/api/ps`` every ``interval_s`` seconds and reports residency gauges."""

    def __init__(self, base_url: str, meter: Meter, interval_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.interval_s = max(0.05, float(interval_s))
        parsed = urllib.parse.urlparse(self.base_url)
        self._server: dict[str, Any] = {SERVER_ADDRESS: parsed.hostname or "localhost"}
        self._server[SERVER_PORT] = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._models: dict[str, Model] = {}
        self._up: bool | None = None  # None until the first poll
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._register(meter)

    # -------------------------------------------------------------- contract

    def start(self) -> None:
        """Poll once now (so the first export and call have data), then every interval."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.poll()
        self._thread = threading.Thread(
            target=self._loop, name="platform-otel-ollama-ps", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def lookup(self, model: str) -> float | None:
        """``size_vram / size`` of a loaded model (``llama3`` also finds ``llama3:latest``)."""
        with self._lock:
            found = self._models.get(model) or self._models.get(f"{model}:latest")
        return found.ratio if found is not None else None

    # -------------------------------------------------------------- polling

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> bool:
        """One ``GET /api/ps``; returns whether Ollama answered."""
        try:
            models = self._fetch()
        except (OSError, ValueError) as exc:  # connection refused, timeout, HTTP error, bad JSON
            with self._lock:
                self._up, self._models = False, {}
            log_once(
                f"ollama-ps:{self.base_url}",
                logging.INFO,
                "platform-otel: Ollama at %s does not answer /api/ps (%s); ollama.up=0",
                self.base_url,
                exc,
            )
            return False
        except Exception:
            report_internal_error("ollama /api/ps poll")
            return False
        with self._lock:
            self._up, self._models = True, models
        forget(f"ollama-ps:{self.base_url}")
        return True

    def _fetch(self) -> dict[str, Model]:
        request = urllib.request.Request(
            f"{self.base_url}/api/ps", headers={"Accept": "application/json"}
        )
        timeout = min(max(self.interval_s, 0.5), 5.0)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read(1 << 20))
        models: dict[str, Model] = {}
        for entry in body.get("models") or ():
            name = entry.get("name") or entry.get("model")
            if not isinstance(name, str) or len(models) >= MAX_MODELS:
                continue
            try:
                models[name] = Model(
                    name, int(entry.get("size", 0)), int(entry.get("size_vram", 0))
                )
            except (TypeError, ValueError):
                continue
        return models

    # -------------------------------------------------------------- instruments

    def _register(self, meter: Meter) -> None:
        from opentelemetry.metrics import Observation

        def per_model(pick: Any) -> Any:
            def callback(_options: CallbackOptions) -> Iterable[Observation]:
                with self._lock:
                    models = list(self._models.values())
                out = []
                for model in models:
                    value = pick(model)
                    if value is not None:
                        out.append(Observation(value, {**self._server, MODEL: model.name}))
                return out

            return callback

        def up(_options: CallbackOptions) -> Iterable[Observation]:
            if self._up is None:
                return []
            return [Observation(1 if self._up else 0, dict(self._server))]

        meter.create_observable_gauge(
            VRAM_RATIO,
            [per_model(lambda m: m.ratio)],
            unit="1",
            description="Share of a loaded Ollama model held in GPU memory (size_vram / size)",
        )
        meter.create_observable_gauge(
            MODEL_SIZE,
            [per_model(lambda m: m.size)],
            unit="By",
            description="Memory a loaded Ollama model takes",
        )
        meter.create_observable_gauge(
            VRAM_SIZE,
            [per_model(lambda m: m.size_vram)],
            unit="By",
            description="GPU memory a loaded Ollama model takes",
        )
        meter.create_observable_gauge(
            UP, [up], unit="1", description="1 when Ollama answered the last /api/ps poll, else 0"
        )
