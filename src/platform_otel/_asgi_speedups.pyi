"""Optional C request path (``_asgi_speedups.c``); see ``instrumentation/_asgi.py`` for its use."""

from typing import Any

class RequestPath:
    """The per-request work of one ``ServerTelemetry``; built by its ``_c_request_path``."""

    def __init__(self, **fields: Any) -> None: ...
    def start(self, scope: Any) -> Any: ...
    def finish(
        self, scope: Any, started: Any, root_path: str, status: int, exc: Any, completed: Any
    ) -> None: ...
