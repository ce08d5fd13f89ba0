"""A tiny HTTP server answering Ollama's ``GET /api/ps`` with a list the test sets.

For the residency poller and ``platform-otel monitor`` tests; it speaks only the
part of the Ollama API they read (``models[].name``, ``size``, ``size_vram``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["PsServer"]


class PsServer:
    """``with PsServer(models) as ps: ps.url`` -> ``http://127.0.0.1:<port>``; ``ps.models`` is live."""

    def __init__(self, models: list[dict[str, Any]] | None = None) -> None:
        self.models: list[dict[str, Any]] = list(models or [])
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/api/ps":
                    self.send_error(404)
                    return
                owner.requests += 1
                body = json.dumps({"models": owner.models}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
