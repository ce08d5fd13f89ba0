"""Optional C encoder (``_speedups.c``); see ``_otlp_fast._span_message`` for its use."""

from typing import Any

def span_message(
    context: Any,
    parent: Any,
    name: str,
    kind: int,
    start: int | None,
    end: int | None,
    attributes: dict[str, Any],
    tail: bytes,
    head: bytes = ...,
) -> bytes | None: ...
