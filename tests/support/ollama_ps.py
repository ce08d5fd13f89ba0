"""A tiny HTTP server speaking the part of Ollama's API the GPU tests need.

``GET /api/ps`` answers with the model list the test sets (``models[].name``,
``size``, ``size_vram``: what the residency poller reads). ``POST /api/chat`` and
``/api/generate`` answer like Ollama, streamed (NDJSON) or not, with the timing
fields of a final response (``load_duration`` of a first call to a model is a
cold load), so the end-to-end collector test can drive the real ``ollama`` client
through it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["PsServer"]

_TOKENS = ["The", " GPU", " is", " busy", "."]


class PsServer:
    """``with PsServer(models) as ps: ps.url`` -> ``http://127.0.0.1:<port>``; ``ps.models`` is live."""

    def __init__(self, models: list[dict[str, Any]] | None = None) -> None:
        self.models: list[dict[str, Any]] = list(models or [])
        self.requests = 0
        self.loaded: set[str] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # headers and body in one write: no delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/api/ps":
                    self._send(404, b'{"error":"not found"}')
                    return
                owner.requests += 1
                self._send(200, json.dumps({"models": owner.models}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path not in ("/api/chat", "/api/generate"):
                    self._send(404, b'{"error":"not found"}')
                    return
                model = str(request.get("model", ""))
                chat = self.path == "/api/chat"
                cold = model not in owner.loaded
                owner.loaded.add(model)

                def chunk(text: str) -> dict[str, Any]:
                    base: dict[str, Any] = {
                        "model": model,
                        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "done": False,
                    }
                    if chat:
                        base["message"] = {"role": "assistant", "content": text}
                    else:
                        base["response"] = text
                    return base

                final = {
                    **chunk(""),
                    "done": True,
                    "done_reason": "stop",
                    "total_duration": 320_000_000 if cold else 60_000_000,
                    "load_duration": 250_000_000 if cold else 1_000_000,
                    "prompt_eval_count": 12,
                    "prompt_eval_duration": 8_000_000,
                    "eval_count": len(_TOKENS),
                    "eval_duration": 50_000_000,
                }
                if request.get("stream", True):
                    lines = [json.dumps(chunk(t)) for t in _TOKENS] + [json.dumps(final)]
                    body = ("\n".join(lines) + "\n").encode()
                    self._send(200, body, "application/x-ndjson")
                else:
                    whole = {**final, **chunk("".join(_TOKENS)), "done": True}
                    self._send(200, json.dumps(whole).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> PsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (connections are then refused); safe to call twice."""
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._thread = None

    def __enter__(self) -> PsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
