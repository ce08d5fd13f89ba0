"""A simulated Ollama server: the same HTTP API, no model, configurable latency.

Why: the demo, the quick unit tests and the overhead benchmark need an Ollama
that answers everywhere (no GPU, no 76 MB server build, no model download) and
whose timing is known. It speaks the parts of Ollama's API the ``ollama`` client
uses for inference and residency:

* ``POST /api/chat`` and ``/api/generate``, streaming (NDJSON, chunked) or not,
  with the final response's ``done_reason``, ``total_duration``,
  ``load_duration``, ``prompt_eval_count``/``_duration``, ``eval_count``/``_duration``
  (nanoseconds, matching the time really spent);
* ``POST /api/embed`` and ``/api/embeddings``;
* ``GET /api/ps`` (loaded models with ``size`` and ``size_vram``), ``/api/tags``,
  ``/api/version``;
* HTTP 404 ``{"error": "model 'x' not found"}`` for an unknown model.

A model's first call pays ``load_s`` (a cold load); it then stays loaded for the
request's ``keep_alive`` (seconds, default 300; 0 unloads it after the call).
``options.num_predict`` bounds the output tokens (``done_reason: "length"``).
The simulator's own option ``sim_error_after: N`` ends a stream with an in-band
``{"error": ...}`` line after N chunks.

Run it standalone::

    python -m platform_otel._ollama_sim --port 11434 --latency 0.05
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_MODELS", "SimulatedOllama", "main"]

#: model name -> share of the model in VRAM (1.0: fully on the GPU)
DEFAULT_MODELS: Mapping[str, float] = {
    "tiny:latest": 1.0,
    "llama3.2:1b": 1.0,
    "qwen2.5:0.5b": 1.0,
    "nomic-embed-text:latest": 1.0,
    "big-model:70b": 0.42,
}
_WORDS = [
    "the",
    "pipeline",
    "converts",
    "each",
    "document",
    "into",
    "markdown",
    "and",
    "stores",
    "a",
    "short",
    "summary",
    "for",
    "search",
    "while",
    "the",
    "model",
    "runs",
    "on",
    "the",
    "local",
    "gpu",
    "and",
    "reports",
    "its",
    "own",
    "timings",
]
_MODEL_SIZE = 1_300_000_000


def _normalize(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _count_tokens(value: Any) -> int:
    if isinstance(value, str):
        return max(1, len(value.split()))
    if isinstance(value, list):
        return sum(_count_tokens(v) for v in value) or 1
    if isinstance(value, dict):
        return _count_tokens(value.get("content", ""))
    return 1


class SimulatedOllama:
    """An Ollama look-alike on ``host:port`` (0: a free port), served from a daemon thread.

    ``latency_s`` is the whole generation time of a chat/generate call (10 % prefill,
    the rest spread over ``chunks`` output tokens); ``load_s`` the cold-load time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_s: float = 0.05,
        chunks: int = 20,
        load_s: float = 0.25,
        models: Mapping[str, float] | None = None,
        version: str = "0.17.4-sim",
    ) -> None:
        self.latency_s = latency_s
        self.chunks = max(1, chunks)
        self.load_s = load_s
        self.models = {_normalize(k): v for k, v in (models or DEFAULT_MODELS).items()}
        self.version = version
        self.requests = 0
        self._loaded: dict[str, float] = {}  # model -> expires at (monotonic)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"sim": self})
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def start(self) -> SimulatedOllama:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ollama-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> SimulatedOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ model state

    def _load(self, model: str) -> float:
        """Seconds spent loading ``model`` for this call (0 when it was loaded)."""
        with self._lock:
            now = time.monotonic()
            expires = self._loaded.get(model)
            cold = expires is None or expires < now
        started = time.perf_counter()
        if cold:
            time.sleep(self.load_s)
        else:
            time.sleep(0.0005)  # scheduler bookkeeping, as a loaded model shows it
        return time.perf_counter() - started

    def _keep(self, model: str, keep_alive: Any) -> None:
        seconds = 300.0
        if isinstance(keep_alive, (int, float)):
            seconds = float(keep_alive)
        elif isinstance(keep_alive, str) and keep_alive.strip():
            text = keep_alive.strip()
            units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            for unit in ("ms", "s", "m", "h"):
                if text.endswith(unit):
                    try:
                        seconds = float(text[: -len(unit)]) * units[unit]
                    except ValueError:
                        pass
                    break
            else:
                try:
                    seconds = float(text)
                except ValueError:
                    pass
        with self._lock:
            if seconds == 0:
                self._loaded.pop(model, None)
            else:
                self._loaded[model] = time.monotonic() + (seconds if seconds > 0 else 1e9)

    def ps(self) -> dict[str, Any]:
        now = time.monotonic()
        models = []
        with self._lock:
            loaded = [(m, e) for m, e in self._loaded.items() if e >= now]
        for model, expires in loaded:
            ratio = self.models.get(model, 1.0)
            expires_at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=expires - now)
            models.append(
                {
                    "name": model,
                    "model": model,
                    "size": _MODEL_SIZE,
                    "size_vram": int(_MODEL_SIZE * ratio),
                    "digest": hashlib.sha256(model.encode()).hexdigest(),
                    "details": {"format": "gguf", "family": "llama", "parameter_size": "1B"},
                    "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                    "context_length": 4096,
                }
            )
        return {"models": models}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-stream is normal here, not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    sim: SimulatedOllama
    protocol_version = "HTTP/1.1"
    server_version = "ollama-sim"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, payload: Any) -> None:
        data = json.dumps(payload).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        self.sim.requests += 1
        if self.path == "/api/version":
            self._json(200, {"version": self.sim.version})
        elif self.path == "/api/ps":
            self._json(200, self.sim.ps())
        elif self.path == "/api/tags":
            self._json(
                200,
                {"models": [{"name": m, "model": m, "size": _MODEL_SIZE} for m in self.sim.models]},
            )
        elif self.path in ("/", "/api"):
            body = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._json(404, {"error": "not found"})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.sim.requests += 1
        body = self._body()
        route = self.path
        if route not in ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings"):
            self._json(404, {"error": "not found"})
            return
        name = body.get("model")
        if not isinstance(name, str) or not name:
            self._json(400, {"error": "model is required"})
            return
        model = _normalize(name)
        if model not in self.sim.models:
            self._json(404, {"error": f"model '{name}' not found"})
            return
        if route in ("/api/embed", "/api/embeddings"):
            self._embed(route, model, body)
        else:
            self._generate(route, model, body)

    def _embed(self, route: str, model: str, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        load = self.sim._load(model)
        inputs = body.get("input") if route == "/api/embed" else body.get("prompt")
        texts = inputs if isinstance(inputs, list) else [inputs or ""]
        prefill_start = time.perf_counter()
        time.sleep(self.sim.latency_s * 0.2)
        prefill = time.perf_counter() - prefill_start
        vectors = []
        for text in texts:
            digest = hashlib.sha256(str(text).encode()).digest()
            vectors.append([round((b - 128) / 128, 4) for b in digest[:16]])
        self.sim._keep(model, body.get("keep_alive"))
        if route == "/api/embeddings":
            self._json(200, {"embedding": vectors[0]})
            return
        self._json(
            200,
            {
                "model": model,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": int(load * 1e9),
                "prompt_eval_count": _count_tokens(texts),
                "prompt_eval_duration": int(prefill * 1e9),
            },
        )

    def _generate(self, route: str, model: str, body: dict[str, Any]) -> None:
        sim = self.sim
        started = time.perf_counter()
        raw_options = body.get("options")
        options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        stream = body.get("stream", True) is not False
        chat = route == "/api/chat"
        prompt = body.get("messages") if chat else body.get("prompt")
        limit = options.get("num_predict")
        n = sim.chunks if not isinstance(limit, int) or limit <= 0 else min(limit, sim.chunks)
        reason = "length" if isinstance(limit, int) and 0 < limit <= sim.chunks else "stop"
        error_after = options.get("sim_error_after")

        load = sim._load(model)
        prefill_start = time.perf_counter()
        time.sleep(sim.latency_s * 0.1)
        prefill = time.perf_counter() - prefill_start
        step = sim.latency_s * 0.9 / n

        def piece(i: int) -> str:
            return ("" if i == 0 else " ") + _WORDS[i % len(_WORDS)]

        def partial(text: str, done: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": _now_iso()}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            out["done"] = done
            return out

        decode_start = time.perf_counter()
        if stream:
            self._start_stream()
        texts = []
        try:
            for i in range(n):
                time.sleep(step)
                if isinstance(error_after, int) and i >= error_after:
                    self._chunk({"error": "simulated failure while generating"})
                    self._end_stream()
                    sim._keep(model, body.get("keep_alive"))
                    return
                texts.append(piece(i))
                if stream:
                    self._chunk(partial(texts[-1], False))
        except (BrokenPipeError, ConnectionResetError):  # the client closed the stream early
            sim._keep(model, body.get("keep_alive"))
            self.close_connection = True
            return
        decode = time.perf_counter() - decode_start
        final = partial("" if stream else "".join(texts), True)
        final.update(
            {
                "done_reason": reason,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": int(load * 1e9),
                "prompt_eval_count": _count_tokens(prompt),
                "prompt_eval_duration": int(prefill * 1e9),
                "eval_count": n,
                "eval_duration": int(decode * 1e9),
            }
        )
        sim._keep(model, body.get("keep_alive"))
        try:
            if stream:
                self._chunk(final)
                self._end_stream()
            else:
                self._json(200, final)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated Ollama server (same HTTP API).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--latency", type=float, default=0.05, help="generation time per call (s)")
    parser.add_argument("--chunks", type=int, default=20, help="output tokens per call")
    parser.add_argument("--load", type=float, default=0.25, help="cold-load time (s)")
    args = parser.parse_args(argv)
    sim = SimulatedOllama(
        args.host, args.port, latency_s=args.latency, chunks=args.chunks, load_s=args.load
    )
    print(f"simulated Ollama on {sim.url}", flush=True)
    try:
        sim._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
