"""Optional C request path (``_asgi_speedups.c``); see ``instrumentation/_asgi.py`` for its use."""

from typing import Any

class Exchange:
    """One traced request: the ``send`` the application gets (``_asgi._Exchange`` in C)."""

    scope: Any
    started: Any
    root_path: str
    send: Any
    outer: Any
    status: Any
    completed: tuple[float, int] | None
    def __call__(self, message: Any) -> Any: ...

class RequestPath:
    """The per-request work of one ``ServerTelemetry``; built by its ``_c_request_path``."""

    def __init__(self, **fields: Any) -> None: ...
    def begin(self, scope: Any, send: Any) -> Exchange: ...
    def end(self, exchange: Any, exc: BaseException | None) -> None: ...
