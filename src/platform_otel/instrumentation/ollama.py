"""Ollama client integration: one GenAI CLIENT span and the GenAI metrics per LLM call.

Instruments ``ollama.Client`` and ``ollama.AsyncClient`` (``ollama`` 0.4 and newer):
``chat``, ``generate``, ``embed`` and ``embeddings``, streaming or not, and the
module-level shortcuts (``ollama.chat`` ...), which are bound methods of a default
client made at import time and are re-bound here.

Why it is built the way it is:

* **Streams end their span exactly once, whatever the caller does.** A stream is
  handed back wrapped; the span ends when the stream is exhausted, raises, is
  closed (``close()`` / ``aclose()``), or is garbage collected (a ``break``
  out of the loop: ``weakref.finalize``), at the time of the last chunk the
  caller received. No context token is held across a ``yield``: the span's
  context is attached only inside each ``__next__`` / ``__anext__`` call and
  detached before it returns, so a stream consumed in another asyncio task or
  thread never triggers "Failed to detach context".
* **One span per call.** The HTTP request ``ollama`` makes through httpx runs
  with HTTP instrumentation suppressed (the public
  ``opentelemetry.instrumentation.utils.suppress_http_instrumentation``), so the
  httpx integration adds no second span.
* **Ollama's own timings.** The final response carries server-side nanosecond
  timings; they become ``ollama.*`` span attributes and histograms (prefill,
  decode, tokens/s) and a cold-load flag and counter.
* **Residency.** The first call to a server starts a low-rate ``/api/ps`` poller
  for it (:mod:`platform_otel._ollama_ps`; never at ``init()``, so air-gapped pods
  make no call they did not make themselves); the span of a call gets the
  model's VRAM share from the last poll.
* **GPU state.** When the ``gpu`` integration is active its ``correlate()``
  summary of the call's time window goes on the span, and its bounded
  ``metric_attributes()`` on the duration histogram.
* **Privacy.** Prompts and completions are recorded only with
  ``capture_content=True`` (``PLATFORM_OTEL_CAPTURE_CONTENT``), on the span, never
  on metrics.

Nothing here imports ``ollama`` at module import time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._safety import log_once, report_internal_error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.trace import Span, Tracer

    from .._ollama_ps import ResidencyPoller
    from . import InstrumentationContext

__all__ = ["LIBRARY", "instrument", "uninstrument"]

LIBRARY = "ollama"

# Metric names (documented in docs/telemetry.md, "LLM calls (Ollama)").
OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
PREFILL_DURATION = "ollama.prefill.duration"
DECODE_DURATION = "ollama.decode.duration"
DECODE_RATE = "ollama.decode.tokens_per_second"
MODEL_LOADS = "ollama.model.loads"

# Bucket boundaries from the GenAI semantic conventions.
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))  # 0.01 ... 81.92
TOKEN_BUCKETS = tuple(4**i for i in range(14))  # 1, 4, 16 ... 67108864
CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
# Server-side phases are often a few milliseconds (prefill of a short prompt).
PHASE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120)
RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)

#: ``load_duration`` at or above this is a cold load (the model was read into memory);
#: a loaded model answers in 1-10 ms (scheduler bookkeeping only), while loading even a
#: 0.5 MB model takes 35-300 ms on a CPU (measured with the real server in the tests).
COLD_LOAD_S = 0.02

_OPERATIONS = {
    "chat": "chat",
    "generate": "text_completion",
    "embed": "embeddings",
    "embeddings": "embeddings",
}
_STREAMING = frozenset({"chat", "generate"})

_OP = "gen_ai.operation.name"
_PROVIDER = "gen_ai.provider.name"
_REQ_MODEL = "gen_ai.request.model"
_RESP_MODEL = "gen_ai.response.model"
_ADDRESS = "server.address"
_PORT = "server.port"
_STREAM = "gen_ai.request.stream"
_ERROR = "error.type"

_MAX_MODELS = 100  # distinct model names on metrics; more become _OTHER
_MAX_SERVERS = 8  # residency pollers (one per Ollama server called)
_MAX_CONTENT = 65536  # characters of captured content per message list
_MAX_GAPS = 8192  # chunk intervals kept per stream until it ends; later ones recorded at once
_OPTIONS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "num_predict": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
}
_MISSING = object()
_EMPTY: Any = None  # a context whose span is invalid (no exemplar), made at instrument()


_TPOC_DESCRIPTION = "Time between consecutive chunks of a streamed response."


def _per_chunk_histogram(meter: Any, histogram: Callable[..., Any]) -> Any:
    """``time_per_output_chunk``: recorded once per chunk, so through the fast path's
    pre-aggregated histogram where it is on (~1 µs a record instead of ~11 µs), else the
    SDK instrument. Same metric, points and exemplars (tests/test_ollama.py)."""
    from .. import _fast

    lean = _fast.histogram(meter, TIME_PER_OUTPUT_CHUNK, "s", _TPOC_DESCRIPTION, CHUNK_BUCKETS)
    if lean is None:
        return histogram(TIME_PER_OUTPUT_CHUNK, "s", CHUNK_BUCKETS, _TPOC_DESCRIPTION)
    return _LeanRecord(lean)


class _LeanRecord:
    """A lean histogram behind the SDK instrument's ``record(amount, attributes, context)``."""

    __slots__ = ("_lean",)

    def __init__(self, lean: Any) -> None:
        self._lean = lean

    def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        attrs = attributes or {}
        span_context = None
        if context is not None and context is not _EMPTY:  # _EMPTY: no exemplar, no lookup
            from opentelemetry import trace

            found = trace.get_current_span(context).get_span_context()
            span_context = found if found.is_valid else None
        self._lean.record(amount, frozenset(attrs.items()), attrs, span_context)


@dataclass
class _State:
    tracer: Tracer
    meter: Any
    duration: Histogram
    tokens: Histogram
    ttfc: Histogram
    tpoc: Any  # Histogram, or _LeanRecord (the same metric through the fast path)
    prefill: Histogram
    decode: Histogram
    rate: Histogram
    loads: Counter
    capture_content: bool
    ps_interval: float
    patches: list[tuple[Any, str, Any]] = field(default_factory=list)
    params: dict[Any, tuple[str, ...]] = field(default_factory=dict)
    pollers: dict[str, ResidencyPoller] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bounded_model(self, model: str) -> str:
        if model in self.models:
            return model
        with self.lock:
            if len(self.models) < _MAX_MODELS:
                self.models.add(model)
                return model
        log_once(
            "ollama-models-overflow",
            logging.WARNING,
            "platform-otel: more than %d distinct Ollama model names; further names are "
            "reported as _OTHER on metrics (spans keep the real name)",
            _MAX_MODELS,
        )
        return "_OTHER"

    def poller(self, base_url: str) -> ResidencyPoller | None:
        """The running /api/ps poller of ``base_url`` (started on its first call); never raises."""
        if self.ps_interval <= 0:
            return None
        try:
            return self._poller(base_url)
        except Exception:
            report_internal_error("ollama /api/ps poller")
            return None

    def _poller(self, base_url: str) -> ResidencyPoller | None:
        poller = self.pollers.get(base_url)
        if poller is None:
            with self.lock:
                poller = self.pollers.get(base_url)
                if poller is None:
                    if len(self.pollers) >= _MAX_SERVERS:
                        return None
                    from .._ollama_ps import ResidencyPoller

                    poller = ResidencyPoller(base_url, self.meter, self.ps_interval)
                    self.pollers[base_url] = poller
        poller.start()
        return poller


_state: _State | None = None


# --------------------------------------------------------------------------- contract


def instrument(ctx: InstrumentationContext) -> str | None:
    """Patch the installed ``ollama``; return a reason string when its version is unsupported."""
    global _state
    if _state is not None:
        return None
    try:
        version = importlib.metadata.version("ollama")
    except importlib.metadata.PackageNotFoundError:
        return "ollama is not installed"
    parts = version.split(".")
    if (
        len(parts) >= 2
        and parts[0].isdigit()
        and parts[1].isdigit()
        and (int(parts[0]), int(parts[1])) < (0, 4)
    ):
        return f"ollama {version} is not supported (supported: 0.4 and newer)"

    global _EMPTY
    from opentelemetry import trace
    from opentelemetry.context import Context

    # Not an empty Context: the SDK treats an empty one as "use the current context".
    _EMPTY = trace.set_span_in_context(trace.INVALID_SPAN, Context())
    settings = ctx.settings
    meter = ctx.meter_provider.get_meter("platform_otel.ollama", __version__)

    def histogram(name: str, unit: str, buckets: tuple[float, ...], description: str) -> Any:
        return meter.create_histogram(
            name, unit=unit, description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )  # fmt: skip

    state = _State(
        tracer=ctx.tracer_provider.get_tracer("platform_otel.ollama", __version__),
        meter=meter,
        duration=histogram(
            OPERATION_DURATION, "s", DURATION_BUCKETS, "Duration of a GenAI operation (whole stream)."
        ),
        tokens=histogram(
            TOKEN_USAGE, "{token}", TOKEN_BUCKETS, "Input and output tokens of a GenAI operation."
        ),
        ttfc=histogram(
            TIME_TO_FIRST_CHUNK, "s", DURATION_BUCKETS,
            "Time from the request to the first chunk of a streamed response.",
        ),
        tpoc=_per_chunk_histogram(meter, histogram),
        prefill=histogram(
            PREFILL_DURATION, "s", PHASE_BUCKETS,
            "Ollama's prompt evaluation time (prompt_eval_duration).",
        ),
        decode=histogram(
            DECODE_DURATION, "s", PHASE_BUCKETS, "Ollama's generation time (eval_duration)."
        ),
        rate=histogram(
            DECODE_RATE, "{token}", RATE_BUCKETS,  # per second: the name says so
            "Generated tokens per second of decode time (eval_count / eval_duration).",
        ),
        loads=meter.create_counter(
            MODEL_LOADS, unit="{load}",
            description="Calls that paid a cold model load (load_duration >= 20 ms).",
        ),
        capture_content=settings.capture_content,
        ps_interval=settings.ollama_ps_interval,
    )  # fmt: skip
    try:
        _patch_all(state)
    except Exception:
        _undo(state)
        raise
    _state = state
    return None


def uninstrument() -> None:
    """Restore every patched attribute and stop the residency pollers; safe when not instrumented."""
    global _state
    state, _state = _state, None
    if state is not None:
        _undo(state)
        for poller in list(state.pollers.values()):
            poller.stop(timeout=0.2)  # daemon threads: shutdown never waits out a slow poll
        state.pollers.clear()


# --------------------------------------------------------------------------- patching


def _patch_all(state: _State) -> None:
    import ollama
    import wrapt

    for cls_name, is_async in (("Client", False), ("AsyncClient", True)):
        cls = getattr(ollama, cls_name, None)
        if cls is None:
            continue
        for method in _OPERATIONS:
            original = vars(cls).get(method, _MISSING)
            if original is _MISSING:
                continue
            names = tuple(list(inspect.signature(original).parameters)[1:])  # without self
            state.params[(cls_name, method)] = names
            wrapper = _async_wrapper(method, names) if is_async else _sync_wrapper(method, names)
            wrapt.wrap_function_wrapper(cls, method, wrapper)
            state.patches.append((cls, method, original))
    # ollama.chat etc. are bound methods of ollama._client made at import: re-bind them.
    default = getattr(ollama, "_client", None)
    if default is not None:
        for method in _OPERATIONS:
            bound = getattr(ollama, method, None)
            if getattr(bound, "__self__", None) is default:
                state.patches.append((ollama, method, bound))
                setattr(ollama, method, getattr(default, method))


def _undo(state: _State) -> None:
    while state.patches:
        owner, attr, original = state.patches.pop()
        with contextlib.suppress(AttributeError, TypeError):
            setattr(owner, attr, original)


# --------------------------------------------------------------------------- one call


def _attach(ctx: Context) -> object:
    from opentelemetry import context

    return context.attach(ctx)


def _detach(token: object, ctx: Context) -> None:
    """Detach ``token`` if ``ctx`` is still current here (not when an await was torn down elsewhere)."""
    from opentelemetry import context

    if context.get_current() is ctx:
        context.detach(token)  # type: ignore[arg-type]


def _value(obj: Any, name: str) -> Any:
    """``obj.name`` for ollama's response models, ``obj[name]`` for plain dicts."""
    if type(obj) is dict:
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None and isinstance(obj, Mapping):
        return obj.get(name)
    return value


_servers: weakref.WeakKeyDictionary[Any, tuple[Any, tuple[str, str, int]]] = (
    weakref.WeakKeyDictionary()
)


def _server(instance: Any) -> tuple[str, str, int]:
    """(base URL, host, port) of the client's Ollama server (cached per client and URL)."""
    url = getattr(getattr(instance, "_client", None), "base_url", None)
    if url is None:
        return "http://127.0.0.1:11434", "127.0.0.1", 11434
    try:
        cached = _servers.get(instance)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and cached[0] is url:
        return cached[1]
    scheme = getattr(url, "scheme", "http") or "http"
    host = getattr(url, "host", None) or "127.0.0.1"
    port = getattr(url, "port", None) or (443 if scheme == "https" else 80)
    result = (str(url).rstrip("/"), str(host), int(port))
    with contextlib.suppress(TypeError):
        _servers[instance] = (url, result)
    return result


def _error_type(exc: BaseException) -> str:
    code = getattr(exc, "status_code", None)
    if type(exc).__name__ == "ResponseError" and isinstance(code, int) and code >= 100:
        return str(code)  # HTTP status of Ollama's answer, e.g. 404 for an unknown model
    return type(exc).__qualname__


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _content_json(items: list[dict[str, Any]]) -> str:
    """``items`` as JSON of at most ``_MAX_CONTENT`` characters, valid JSON even when cut.

    An over-long value keeps its structure: the text ``content`` strings are cut to the
    longest total that fits (the earliest text is kept first); if the structure alone is
    too long, trailing items go.
    """
    text = _dumps(items)
    if len(text) <= _MAX_CONTENT:
        return text
    while len(_dumps(_cut_contents(items, 0)[0])) > _MAX_CONTENT:
        if len(items) <= 1:
            return "[]"
        items = items[: len(items) // 2]
    fits, too_long = 0, _cut_contents(items, None)[1] + 1  # characters of text content
    while too_long - fits > 1:  # about 17 tries for a 100k-character prompt
        middle = (fits + too_long) // 2
        if len(_dumps(_cut_contents(items, middle)[0])) <= _MAX_CONTENT:
            fits = middle
        else:
            too_long = middle
    return _dumps(_cut_contents(items, fits)[0])


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _cut_contents(value: Any, budget: int | None) -> tuple[Any, int]:
    """(``value`` with its ``content`` strings cut to ``budget`` characters in all, the
    characters kept); ``budget=None`` cuts nothing (it counts)."""
    if isinstance(value, list):
        out, kept = [], 0
        for item in value:
            item, n = _cut_contents(item, None if budget is None else budget - kept)
            out.append(item)
            kept += n
        return out, kept
    if isinstance(value, dict):
        copy, kept = dict(value), 0
        for key, item in value.items():
            if key == "content" and isinstance(item, str):
                copy[key] = item if budget is None else item[: max(0, budget - kept)]
                kept += len(copy[key])
            elif isinstance(item, (list, dict)):
                copy[key], n = _cut_contents(item, None if budget is None else budget - kept)
                kept += n
        return copy, kept
    return value, 0


def _input_messages(method: str, params: Mapping[str, Any]) -> dict[str, str]:
    """gen_ai.input.messages (and system instructions) in the semantic-convention JSON shape."""
    out: dict[str, str] = {}
    if method == "chat":
        messages = []
        for message in list(params.get("messages") or ())[:256]:
            role = _value(message, "role") or "user"
            parts: list[dict[str, Any]] = []
            content = _value(message, "content")
            if content:
                parts.append({"type": "text", "content": _text(content)})
            for call in list(_value(message, "tool_calls") or ())[:32]:
                function = _value(call, "function")
                parts.append(
                    {
                        "type": "tool_call",
                        "name": _text(_value(function, "name")),
                        "arguments": _value(function, "arguments"),
                    }
                )
            messages.append({"role": str(role), "parts": parts})
        out["gen_ai.input.messages"] = _content_json(messages)
    elif method == "generate":
        prompt = _text(params.get("prompt"))
        out["gen_ai.input.messages"] = _content_json(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        )
        system = _text(params.get("system"))
        if system:
            out["gen_ai.system_instructions"] = _content_json([{"type": "text", "content": system}])
    return out


class _Call:
    """One LLM call in flight: its span, clocks and what the response said. Ends once."""

    __slots__ = (
        "_ended",
        "_lock",
        "chunks",
        "content",
        "content_len",
        "context",
        "final",
        "first_ns",
        "gaps",
        "last_ns",
        "method",
        "metric_attrs",
        "model",
        "poller",
        "span",
        "start_ns",
        "start_wall",
        "state",
        "stream",
    )

    def __init__(
        self,
        state: _State,
        method: str,
        instance: Any,
        names: tuple[str, ...],
        args: Any,
        kwargs: Any,
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.instrumentation.utils import suppress_http_instrumentation
        from opentelemetry.trace import SpanKind

        params = dict(zip(names, args, strict=False))
        params.update(kwargs)
        model = params.get("model")
        self.model = model if isinstance(model, str) else ""
        self.method = method
        self.stream = method in _STREAMING and bool(params.get("stream"))
        self.state = state
        operation = _OPERATIONS[method]
        base_url, host, port = _server(instance)
        attrs: dict[str, Any] = {
            _OP: operation,
            _PROVIDER: "ollama",
            _REQ_MODEL: self.model,
            _ADDRESS: host,
            _PORT: port,
        }
        if method in _STREAMING:
            attrs[_STREAM] = self.stream
        options = params.get("options")
        if options is not None:
            for key, name in _OPTIONS.items():
                value = _value(options, key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    attrs[name] = value
        self.metric_attrs: dict[str, Any] = {
            _OP: operation,
            _PROVIDER: "ollama",
            _REQ_MODEL: state.bounded_model(self.model),
            _ADDRESS: host,
            _PORT: port,
        }
        self.poller = state.poller(base_url)  # before the span: nothing below may fail
        self.start_wall = time.time_ns()
        self.start_ns = time.monotonic_ns()
        self.span: Span = state.tracer.start_span(
            f"{operation} {self.model}".rstrip(),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=self.start_wall,
        )
        if state.capture_content and self.span.is_recording():
            try:  # the span has started: a failure here must not leave it unended
                self.span.set_attributes(_input_messages(method, params))
            except Exception:
                report_internal_error("ollama content capture")
        # The context the HTTP request runs in: this span current, HTTP spans suppressed.
        with suppress_http_instrumentation():
            self.context: Context = trace.set_span_in_context(self.span)
        self.first_ns = 0
        self.last_ns = self.start_ns
        self.chunks = 0
        self.gaps: list[int] = []
        self.content: list[str] | None = (
            [] if state.capture_content and self.stream and self.span.is_recording() else None
        )
        self.content_len = 0
        self.final: Any = None
        self._ended = False
        self._lock = threading.Lock()

    # -- streams

    def on_chunk(self, chunk: Any) -> None:
        now = time.monotonic_ns()
        try:
            state = self.state
            if self.chunks == 0:
                self.first_ns = now
                state.ttfc.record(
                    (now - self.start_ns) / 1e9, self.metric_attrs, context=self.context
                )
            elif len(self.gaps) < _MAX_GAPS:
                self.gaps.append(now - self.last_ns)  # recorded when the call ends
            else:
                state.tpoc.record((now - self.last_ns) / 1e9, self.metric_attrs, context=_EMPTY)
            self.chunks += 1
            self.last_ns = now
            if self.content is not None and self.content_len < _MAX_CONTENT:
                piece = self._piece(chunk)
                if piece:
                    self.content.append(piece)
                    self.content_len += len(piece)
            if _value(chunk, "done"):
                self.final = chunk
        except Exception:
            report_internal_error("ollama stream chunk")

    def _piece(self, chunk: Any) -> str:
        if self.method == "chat":
            return _text(_value(_value(chunk, "message"), "content"))
        return _text(_value(chunk, "response"))

    def abandon(self) -> None:
        """The stream was garbage collected unfinished: end at the last chunk the caller got."""
        self.finish(None, None, end_ns=self.last_ns)

    # -- the end

    def finish(self, response: Any, error: BaseException | None, end_ns: int | None = None) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        try:
            self._finish(response, error, end_ns if end_ns is not None else time.monotonic_ns())
        except Exception:
            report_internal_error("ollama call end")
            with contextlib.suppress(Exception):
                self.span.end()

    def _finish(self, response: Any, error: BaseException | None, end_ns: int) -> None:
        from opentelemetry.trace import StatusCode

        state, span = self.state, self.span
        if response is None:
            response = self.final
        attrs: dict[str, Any] = {}
        metric_attrs = self.metric_attrs
        phase_attrs = metric_attrs
        if self.stream and self.chunks:
            attrs["gen_ai.response.time_to_first_chunk"] = (self.first_ns - self.start_ns) / 1e9
        timings: dict[str, Any] = {}
        input_tokens = output_tokens = None
        if response is not None:
            model = _value(response, "model")
            if isinstance(model, str) and model:
                attrs[_RESP_MODEL] = model
            reason = _value(response, "done_reason")
            if isinstance(reason, str) and reason:
                attrs["gen_ai.response.finish_reasons"] = (reason,)
            input_tokens = _value(response, "prompt_eval_count")
            output_tokens = _value(response, "eval_count")
            if isinstance(input_tokens, int):
                attrs["gen_ai.usage.input_tokens"] = input_tokens
            if isinstance(output_tokens, int):
                attrs["gen_ai.usage.output_tokens"] = output_tokens
            timings = _timings(response)
            attrs.update(timings)
            if self.content is not None or (
                state.capture_content and self.method in _STREAMING and span.is_recording()
            ):
                attrs["gen_ai.output.messages"] = self._output_json(response, reason)
        elif self.content is not None and self.content:
            attrs["gen_ai.output.messages"] = self._output_json(None, None)
        if self.poller is not None:
            ratio = self.poller.lookup(self.model)
            if ratio is not None:
                attrs["ollama.model.vram_ratio"] = ratio
        gpu_span, gpu_metric = _gpu(self.start_ns, end_ns)
        attrs.update(gpu_span)
        if error is not None:
            error_type = _error_type(error)
            attrs[_ERROR] = error_type
            metric_attrs = {**metric_attrs, _ERROR: error_type}
        if gpu_metric:
            metric_attrs = {**metric_attrs, **gpu_metric}
        span.set_attributes(attrs)
        if error is not None:
            if not _is_cancellation(error):
                span.record_exception(error)
            span.set_status(StatusCode.ERROR, str(error)[:256])
        duration = (end_ns - self.start_ns) / 1e9
        context = self.context
        state.duration.record(duration, metric_attrs, context=context)
        gaps = self.gaps
        if gaps:
            # One value per chunk after the first. Only the slowest carries the span as
            # exemplar context: an exemplar costs more than the measurement itself, and the
            # slowest gap is the one worth jumping to the trace from.
            slowest = max(range(len(gaps)), key=gaps.__getitem__)
            tpoc, base = state.tpoc, self.metric_attrs
            for index, gap in enumerate(gaps):
                tpoc.record(gap / 1e9, base, context=context if index == slowest else _EMPTY)
        if error is None:
            if isinstance(input_tokens, int):
                state.tokens.record(
                    input_tokens, {**phase_attrs, "gen_ai.token.type": "input"}, context=context
                )
            if isinstance(output_tokens, int):
                state.tokens.record(
                    output_tokens, {**phase_attrs, "gen_ai.token.type": "output"}, context=context
                )
            if "ollama.prefill.duration" in timings:
                # Server-side phases: no exemplar (the duration histogram links slow calls
                # to their traces; an exemplar costs more than the measurement itself).
                state.prefill.record(
                    timings["ollama.prefill.duration"], phase_attrs, context=_EMPTY
                )
            if "ollama.decode.duration" in timings:
                state.decode.record(timings["ollama.decode.duration"], phase_attrs, context=_EMPTY)
            if "ollama.decode.tokens_per_second" in timings:
                state.rate.record(
                    timings["ollama.decode.tokens_per_second"], phase_attrs, context=_EMPTY
                )
            if timings.get("ollama.cold_load"):
                state.loads.add(1, phase_attrs, context=context)
        span.end(end_time=self.start_wall + (end_ns - self.start_ns))

    def _output_json(self, response: Any, reason: Any) -> str:
        if self.content is not None:
            text = "".join(self.content)
        elif self.method == "chat":
            text = _text(_value(_value(response, "message"), "content"))
        else:
            text = _text(_value(response, "response"))
        message: dict[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": text}],
        }
        if isinstance(reason, str) and reason:
            message["finish_reason"] = reason
        return _content_json([message])


def _timings(response: Any) -> dict[str, Any]:
    """Ollama's server-side timings (ns in the response) as ``ollama.*`` attributes (s)."""
    out: dict[str, Any] = {}
    load = _value(response, "load_duration")
    if isinstance(load, int):
        out["ollama.load.duration"] = load / 1e9
        out["ollama.cold_load"] = load / 1e9 >= COLD_LOAD_S
    prefill = _value(response, "prompt_eval_duration")
    if isinstance(prefill, int):
        out["ollama.prefill.duration"] = prefill / 1e9
    decode = _value(response, "eval_duration")
    if isinstance(decode, int):
        out["ollama.decode.duration"] = decode / 1e9
        count = _value(response, "eval_count")
        if isinstance(count, int) and decode > 0:
            out["ollama.decode.tokens_per_second"] = count / (decode / 1e9)
    return out


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt))


_ATTRIBUTE_TYPES = (str, bool, int, float)


def _gpu(start_ns: int, end_ns: int) -> tuple[dict[str, Any], dict[str, str]]:
    """GPU state over the call from the ``gpu`` integration, when it is active."""
    from . import active

    if "gpu" not in active():
        return {}, {}
    try:
        gpu = importlib.import_module("platform_otel.instrumentation.gpu")
        raw_span = gpu.correlate(start_ns, end_ns) or {}
        raw_metric = gpu.metric_attributes() or {}
        span_attrs = {
            str(k): v
            for k, v in dict(raw_span).items()
            if isinstance(v, _ATTRIBUTE_TYPES)
            or (isinstance(v, (list, tuple)) and all(isinstance(i, _ATTRIBUTE_TYPES) for i in v))
        }
        metric_attrs = {str(k): str(v) for k, v in dict(raw_metric).items()}
        return span_attrs, metric_attrs
    except Exception as exc:
        log_once(
            "ollama-gpu-correlate",
            logging.INFO,
            "platform-otel: GPU correlation unavailable for Ollama spans (%r)",
            exc,
        )
        return {}, {}


# --------------------------------------------------------------------------- wrappers


def _begin(
    method: str, instance: Any, names: tuple[str, ...], args: Any, kwargs: Any
) -> _Call | None:
    state = _state
    if state is None:
        return None
    try:
        return _Call(state, method, instance, names, args, kwargs)
    except Exception:
        report_internal_error("ollama call start")
        return None


def _sync_wrapper(method: str, names: tuple[str, ...]) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(method, instance, names, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        token = _attach(call.context)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _detach(token, call.context)
            call.finish(None, exc)
            raise
        _detach(token, call.context)
        if call.stream and isinstance(result, Iterator):
            return _SyncStream(result, call)
        call.finish(result, None)
        return result

    return wrapper


def _async_wrapper(method: str, names: tuple[str, ...]) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(method, instance, names, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = _attach(call.context)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _detach(token, call.context)
            call.finish(None, exc)
            raise
        _detach(token, call.context)
        if call.stream and isinstance(result, AsyncIterator):
            return _AsyncStream(result, call)
        call.finish(result, None)
        return result

    return wrapper


class _Stream:
    """What the sync and async streams share: the call, its finalizer, the generator's names."""

    __slots__ = ("__weakref__", "_call", "_finalizer", "_inner")

    def __init__(self, inner: Any, call: _Call) -> None:
        self._inner = inner
        self._call = call
        self._finalizer = weakref.finalize(self, call.abandon)
        self._finalizer.atexit = False

    def _end(self, error: BaseException | None) -> None:
        self._finalizer.detach()
        self._call.finish(None, error)

    def __getattr__(self, name: str) -> Any:  # send, throw, gi_frame ... of the generator
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class _SyncStream(_Stream, Iterator[Any]):
    """The caller's stream: ``ollama``'s generator, with the call's span ended exactly once."""

    __slots__ = ()

    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> Any:
        call = self._call
        # Before the first chunk the HTTP request is sent: this span current, no httpx span.
        token = None if call.chunks else _attach(call.context)
        try:
            chunk = next(self._inner)
        except BaseException as exc:
            if token is not None:
                _detach(token, call.context)
            self._end(None if isinstance(exc, StopIteration) else exc)
            raise
        if token is not None:
            _detach(token, call.context)
        call.on_chunk(chunk)
        return chunk

    def close(self) -> None:
        """Close the HTTP response now; the span ends here."""
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end(None)


class _AsyncStream(_Stream, AsyncIterator[Any]):
    """The caller's async stream: the span ends once, in whichever task consumes it."""

    __slots__ = ()

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> Any:
        call = self._call
        # Before the first chunk the HTTP request is sent: this span current, no httpx span.
        token = None if call.chunks else _attach(call.context)
        try:
            chunk = await self._inner.__anext__()
        except BaseException as exc:
            if token is not None:
                _detach(token, call.context)
            if not isinstance(exc, GeneratorExit):  # a torn-down await is not an error
                self._end(None if isinstance(exc, StopAsyncIteration) else exc)
            raise
        if token is not None:
            _detach(token, call.context)
        call.on_chunk(chunk)
        return chunk

    async def aclose(self) -> None:
        """Close the HTTP response now; the span ends here."""
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._end(None)
