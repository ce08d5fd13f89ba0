"""The Ollama integration with the real ``ollama`` client against the simulated server.

The simulated server (``platform_otel._ollama_sim``) speaks Ollama's HTTP API with
known timing, so these tests are quick; tests/test_ollama_real.py repeats the
essentials against a real Ollama server. Providers are in-memory SDK providers;
the httpx integration is on as well, to show it adds no second span.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

ollama = pytest.importorskip("ollama")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

import platform_otel.instrumentation as registry  # noqa: E402
from platform_otel import _ollama_ps  # noqa: E402
from platform_otel._ollama_sim import SimulatedOllama  # noqa: E402
from platform_otel.instrumentation import ollama as po  # noqa: E402
from tests.support.fixtures import free_port, otel_env, run_python  # noqa: E402
from tests.support.genai_otel import Otel  # noqa: E402
from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402

pytestmark = pytest.mark.timeout(60)

LATENCY = 0.03
CHUNKS = 5
MESSAGES = [{"role": "user", "content": "summarize the quarterly report please"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOllama]:
    with SimulatedOllama(latency_s=LATENCY, chunks=CHUNKS, load_s=0.12) as server:
        yield server


@pytest.fixture
def otel() -> Iterator[Otel]:
    with Otel() as o:
        yield o


@pytest.fixture
def detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Records of OpenTelemetry's "Failed to detach context" (must stay empty)."""
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    records: list[logging.LogRecord] = []
    yield records
    records.extend(r for r in caplog.records if "detach" in r.getMessage().lower())
    assert not records, [r.getMessage() for r in records]


def _one_span(otel: Otel) -> ReadableSpan:
    spans = otel.spans()
    assert len(spans) == 1, [(s.name, s.kind) for s in spans]
    return spans[0]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _duration(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


# --------------------------------------------------------------------------- spans


def test_chat_is_one_client_span_with_genai_attributes_and_no_httpx_span(
    otel: Otel, sim: SimulatedOllama
) -> None:
    """A chat call gives one CLIENT span ``chat {model}``; the httpx integration adds none."""
    client = ollama.Client(host=sim.url)
    response = client.chat(model="tiny", messages=MESSAGES, options={"temperature": 0, "seed": 7})
    assert response.done
    span = _one_span(otel)
    attrs = _attrs(span)
    assert span.name == "chat tiny" and span.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "ollama"
    assert attrs["gen_ai.request.model"] == "tiny"
    assert attrs["gen_ai.response.model"] == "tiny:latest"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == sim.port
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["gen_ai.request.temperature"] == 0 and attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.usage.input_tokens"] == response.prompt_eval_count
    assert attrs["gen_ai.usage.output_tokens"] == response.eval_count == CHUNKS
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.status.status_code == StatusCode.UNSET
    # no prompt or completion without capture_content
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system")) for k in attrs)
    otel.assert_all_documented()


@pytest.mark.parametrize(
    ("method", "stream", "operation"),
    [
        ("chat", False, "chat"),
        ("chat", True, "chat"),
        ("generate", False, "text_completion"),
        ("generate", True, "text_completion"),
        ("embed", False, "embeddings"),
        ("embeddings", False, "embeddings"),
    ],
)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_every_operation_sync_and_async(
    otel: Otel, sim: SimulatedOllama, method: str, stream: bool, operation: str, is_async: bool
) -> None:
    """chat, generate, embed, embeddings on Client and AsyncClient: one span each, named by operation."""
    kwargs: dict[str, Any] = {"model": "tiny"}
    if method == "chat":
        kwargs.update(messages=MESSAGES, stream=stream)
    elif method == "generate":
        kwargs.update(prompt="why is the sky blue", stream=stream)
    elif method == "embed":
        kwargs.update(input=["first document", "second document"])
    else:
        kwargs.update(prompt="one document")

    if is_async:

        async def go() -> list[Any]:
            client = ollama.AsyncClient(host=sim.url)
            result = await getattr(client, method)(**kwargs)
            return [c async for c in result] if stream else [result]

        parts = asyncio.run(go())
    else:
        result = getattr(ollama.Client(host=sim.url), method)(**kwargs)
        parts = list(result) if stream else [result]

    assert parts
    span = _one_span(otel)
    attrs = _attrs(span)
    assert span.name == f"{operation} tiny"
    assert attrs["gen_ai.operation.name"] == operation
    if method in ("chat", "generate"):
        assert attrs["gen_ai.request.stream"] is stream
        assert attrs["gen_ai.usage.output_tokens"] == CHUNKS
        assert attrs["ollama.decode.duration"] > 0
    else:
        assert "gen_ai.request.stream" not in attrs
    if method == "embed":
        assert attrs["gen_ai.usage.input_tokens"] == 4  # words of both inputs
    if stream:
        assert len(otel.points(po.TIME_TO_FIRST_CHUNK)) == 1
        (tpoc,) = otel.points(po.TIME_PER_OUTPUT_CHUNK)
        assert tpoc.count == len(parts) - 1  # every chunk after the first
    else:
        assert otel.points(po.TIME_TO_FIRST_CHUNK) == []
    (duration,) = otel.points(po.OPERATION_DURATION)
    assert duration.count == 1
    otel.assert_all_documented()


def test_module_level_functions_are_traced(
    otel: Otel, sim: SimulatedOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ollama.chat(...)`` (a method of the default client bound at import) is traced too."""
    monkeypatch.setattr(ollama._client._client, "base_url", sim.url)
    ollama.chat(model="tiny", messages=MESSAGES)
    ollama.embed(model="tiny", input="text")
    assert [s.name for s in otel.spans()] == ["chat tiny", "embeddings tiny"]


# --------------------------------------------------------------------------- streams


def test_exhausted_stream_span_covers_the_whole_stream(otel: Otel, sim: SimulatedOllama) -> None:
    """The span ends when the last chunk arrived, not when the call returned the generator."""
    client = ollama.Client(host=sim.url)
    started = time.time_ns()
    stream = client.chat(model="tiny", messages=MESSAGES, stream=True)
    assert otel.spans() == []  # nothing ends when the generator is handed back
    chunks = list(stream)
    finished = time.time_ns()
    span = _one_span(otel)
    attrs = _attrs(span)
    assert len(chunks) == CHUNKS + 1 and chunks[-1].done
    assert span.start_time is not None and span.end_time is not None
    assert started <= span.start_time and span.end_time <= finished
    assert _duration(span) >= LATENCY * 0.9
    ttfc = attrs["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc < _duration(span)
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    (duration,) = otel.points(po.OPERATION_DURATION)
    assert duration.sum == pytest.approx(_duration(span), abs=2e-3)
    (first,) = otel.points(po.TIME_TO_FIRST_CHUNK)
    assert first.sum == pytest.approx(ttfc, abs=1e-6)


def test_break_out_of_a_stream_ends_the_span_once_at_the_last_chunk(
    otel: Otel, sim: SimulatedOllama
) -> None:
    """``break`` then drop the stream: the span ends (garbage collection) at the last chunk read."""
    client = ollama.Client(host=sim.url)
    stream = client.generate(model="tiny", prompt="count to ten", stream=True)
    for _chunk in stream:
        break
    read_at = time.time_ns()
    time.sleep(0.2)  # the caller does other things before the stream is dropped
    del stream
    gc.collect()
    span = _one_span(otel)
    assert span.end_time is not None and span.end_time <= read_at
    attrs = _attrs(span)
    assert "error.type" not in attrs and span.status.status_code == StatusCode.UNSET
    assert "gen_ai.response.finish_reasons" not in attrs  # the final chunk never came
    gc.collect()
    assert len(otel.spans()) == 1
    (duration,) = otel.points(po.OPERATION_DURATION)
    assert duration.count == 1 and duration.sum < 0.2


def test_close_ends_the_stream_span(otel: Otel, sim: SimulatedOllama) -> None:
    """``close()`` ends the span at once; iterating again or collecting adds no second end."""
    client = ollama.Client(host=sim.url)
    stream = client.chat(model="tiny", messages=MESSAGES, stream=True)
    next(stream)
    stream.close()
    assert len(otel.spans()) == 1
    with pytest.raises(StopIteration):
        next(stream)
    del stream
    gc.collect()
    assert len(otel.spans()) == 1
    assert otel.points(po.OPERATION_DURATION)[0].count == 1


def test_error_inside_a_stream_marks_the_span(otel: Otel, sim: SimulatedOllama) -> None:
    """An in-band ``{"error": ...}`` line ends the stream with ResponseError: ERROR span, error.type."""
    client = ollama.Client(host=sim.url)
    received = []
    with pytest.raises(ollama.ResponseError):
        for chunk in client.chat(
            model="tiny", messages=MESSAGES, stream=True, options={"sim_error_after": 2}
        ):
            received.append(chunk)
    assert len(received) == 2
    span = _one_span(otel)
    assert span.status.status_code == StatusCode.ERROR
    assert _attrs(span)["error.type"] == "ResponseError"
    assert [e.name for e in span.events] == ["exception"]
    (duration,) = otel.points(po.OPERATION_DURATION)
    assert duration.attributes["error.type"] == "ResponseError"
    otel.assert_all_documented()


def test_exception_in_the_consumer_loop_ends_the_span(otel: Otel, sim: SimulatedOllama) -> None:
    """The caller raising inside its own loop leaves the stream; collecting it ends the span once."""
    client = ollama.Client(host=sim.url)

    def consume() -> None:
        for _chunk in client.chat(model="tiny", messages=MESSAGES, stream=True):
            raise ValueError("caller bug")

    with pytest.raises(ValueError):
        consume()
    gc.collect()
    span = _one_span(otel)
    assert "error.type" not in _attrs(span)  # the call itself did not fail


def test_sync_stream_consumed_in_another_thread(
    otel: Otel, sim: SimulatedOllama, detach_errors: list[logging.LogRecord]
) -> None:
    """A stream made in one thread and read in a worker thread: one span, no detach error."""
    stream = ollama.Client(host=sim.url).chat(model="tiny", messages=MESSAGES, stream=True)
    chunks: list[Any] = []
    worker = threading.Thread(target=lambda: chunks.extend(stream))
    worker.start()
    worker.join(10)
    assert len(chunks) == CHUNKS + 1
    span = _one_span(otel)
    assert _attrs(span)["gen_ai.response.finish_reasons"] == ("stop",)


def test_async_stream_consumed_in_another_task(
    otel: Otel, sim: SimulatedOllama, detach_errors: list[logging.LogRecord]
) -> None:
    """Created in one task, consumed in another: one span over the whole stream, no detach error."""

    async def go() -> int:
        client = ollama.AsyncClient(host=sim.url)
        stream = await client.chat(model="tiny", messages=MESSAGES, stream=True)

        async def consume() -> int:
            return len([c async for c in stream])

        return await asyncio.create_task(consume())

    assert asyncio.run(go()) == CHUNKS + 1
    span = _one_span(otel)
    assert _attrs(span)["gen_ai.usage.output_tokens"] == CHUNKS
    assert _duration(span) >= LATENCY * 0.9


def test_async_stream_chunks_read_from_several_tasks(
    otel: Otel, sim: SimulatedOllama, detach_errors: list[logging.LogRecord]
) -> None:
    """Each chunk read by a different task (and a ``wait_for``): still one span, no detach error."""

    async def go() -> None:
        client = ollama.AsyncClient(host=sim.url)
        stream = await client.generate(model="tiny", prompt="hello", stream=True)
        while True:
            try:
                await asyncio.wait_for(asyncio.create_task(stream.__anext__()), 5)
            except StopAsyncIteration:
                break

    asyncio.run(go())
    span = _one_span(otel)
    assert _attrs(span)["gen_ai.response.finish_reasons"] == ("stop",)


def test_async_stream_aclose_break_and_cancel(
    otel: Otel, sim: SimulatedOllama, detach_errors: list[logging.LogRecord]
) -> None:
    """aclose(), break + garbage collection, and task cancellation each end their span once."""

    async def go() -> None:
        client = ollama.AsyncClient(host=sim.url)
        closed = await client.chat(model="tiny", messages=MESSAGES, stream=True)
        await closed.__anext__()
        await closed.aclose()
        assert len(otel.spans()) == 1

        broken = await client.chat(model="tiny", messages=MESSAGES, stream=True)
        async for _chunk in broken:
            break
        del broken
        gc.collect()
        await asyncio.sleep(0.05)
        assert len(otel.spans()) == 2

        async def slow_reader() -> None:
            stream = await client.generate(model="tiny", prompt="hi", stream=True)
            async for _chunk in stream:
                await asyncio.sleep(10)

        task = asyncio.create_task(slow_reader())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.collect()
        await asyncio.sleep(0.05)

    asyncio.run(go())
    gc.collect()
    spans = otel.spans()
    assert len(spans) == 3, [s.name for s in spans]
    assert [s.status.status_code for s in spans[:2]] == [StatusCode.UNSET, StatusCode.UNSET]
    # the task cancelled in its own loop body abandons the stream: ended once, at the last chunk
    assert spans[2].name == "text_completion tiny"
    assert "error.type" not in _attrs(spans[2])
    assert sum(p.count for p in otel.points(po.OPERATION_DURATION)) == 3


def test_cancellation_while_waiting_for_a_chunk_marks_the_span(
    otel: Otel, detach_errors: list[logging.LogRecord]
) -> None:
    """A timeout (cancellation inside ``__anext__``) ends the span with error.type CancelledError."""
    with SimulatedOllama(latency_s=5.0, chunks=2, load_s=0.0) as slow:

        async def go() -> None:
            client = ollama.AsyncClient(host=slow.url)
            stream = await client.chat(model="tiny", messages=MESSAGES, stream=True)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), 0.3)

        asyncio.run(go())
        gc.collect()
        span = _one_span(otel)
    assert _attrs(span)["error.type"] == "CancelledError"
    assert span.status.status_code == StatusCode.ERROR
    assert span.events == ()  # a cancellation is not recorded as an exception
    assert 0.25 < _duration(span) < 3


# --------------------------------------------------------------------------- errors


def test_unknown_model_is_a_404_error(otel: Otel, sim: SimulatedOllama) -> None:
    """HTTP 404 from Ollama: ResponseError reaches the caller; span ERROR with error.type 404."""
    client = ollama.Client(host=sim.url)
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="no-such-model", messages=MESSAGES)
    assert raised.value.status_code == 404
    with pytest.raises(ollama.ResponseError):
        list(client.generate(model="no-such-model", prompt="x", stream=True))
    spans = otel.spans()
    assert [s.name for s in spans] == ["chat no-such-model", "text_completion no-such-model"]
    for span in spans:
        assert span.status.status_code == StatusCode.ERROR
        assert _attrs(span)["error.type"] == "404"
    points = otel.points(po.OPERATION_DURATION)
    assert {p.attributes["error.type"] for p in points} == {"404"}
    assert otel.points(po.TOKEN_USAGE) == []


def test_connection_refused_sync_and_async(otel: Otel) -> None:
    """Nothing listening: the caller's exception is unchanged; span ERROR with its class as error.type.

    Recent ``ollama`` releases raise ``ConnectionError`` for a non-streamed call (0.4.0
    raised ``httpx.ConnectError``); streams raise ``httpx.ConnectError`` in all of them.
    """
    import httpx

    refused = (ConnectionError, httpx.ConnectError)
    url = f"http://127.0.0.1:{free_port()}"
    client = ollama.Client(host=url)
    raised: list[BaseException] = []
    for stream in (False, True):
        with pytest.raises(refused) as caught:
            result = client.chat(model="tiny", messages=MESSAGES, stream=stream)
            if stream:
                list(result)
        raised.append(caught.value)

    async def go() -> None:
        with pytest.raises(refused) as caught:
            await ollama.AsyncClient(host=url).embed(model="tiny", input="x")
        raised.append(caught.value)

    asyncio.run(go())
    spans = otel.spans()
    assert [_attrs(s)["error.type"] for s in spans] == [type(e).__qualname__ for e in raised]
    assert {type(e).__qualname__ for e in raised} <= {"ConnectionError", "ConnectError"}
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    otel.assert_all_documented()


# --------------------------------------------------------------------------- metrics


def test_metrics_buckets_units_bounded_attributes_and_exemplars(
    otel: Otel, sim: SimulatedOllama
) -> None:
    """Histograms use the semantic-convention buckets; exemplars point at the call's span."""
    client = ollama.Client(host=sim.url)
    list(client.chat(model="tiny", messages=MESSAGES, stream=True, keep_alive=0))
    span = _one_span(otel)
    metrics = otel.metrics()
    duration = metrics[po.OPERATION_DURATION]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert list(point.explicit_bounds) == pytest.approx([0.01 * 2**i for i in range(14)])
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "ollama",
        "gen_ai.request.model": "tiny",
        "server.address": "127.0.0.1",
        "server.port": sim.port,
    }
    assert [e.span_id for e in point.exemplars] == [span.context.span_id]
    assert [e.trace_id for e in point.exemplars] == [span.context.trace_id]
    usage = metrics[po.TOKEN_USAGE]
    assert usage.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in usage.data.data_points}
    assert by_type["output"].sum == CHUNKS
    assert list(by_type["output"].explicit_bounds) == [4**i for i in range(14)]
    assert metrics[po.DECODE_RATE].unit == "{token}"
    for name in (po.TIME_TO_FIRST_CHUNK, po.TIME_PER_OUTPUT_CHUNK, po.TOKEN_USAGE):
        for p in metrics[name].data.data_points:
            assert p.exemplars and p.exemplars[0].span_id == span.context.span_id
    # no prompt, id or content ever reaches a metric attribute
    allowed = {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "server.address",
        "server.port",
        "gen_ai.token.type",
    }
    for metric in metrics.values():
        for p in metric.data.data_points:
            assert set(p.attributes) <= allowed, (metric.name, dict(p.attributes))
    otel.assert_all_documented()


def test_ollama_timings_and_cold_loads(otel: Otel, sim: SimulatedOllama) -> None:
    """Server timings land on the span and histograms; a cold load is flagged and counted once."""
    client = ollama.Client(host=sim.url)
    client.generate(model="qwen2.5:0.5b", prompt="a", keep_alive=0)  # unload after the call
    cold = client.generate(model="qwen2.5:0.5b", prompt="b")
    warm = client.generate(model="qwen2.5:0.5b", prompt="c")
    spans = otel.spans()
    cold_attrs, warm_attrs = _attrs(spans[1]), _attrs(spans[2])
    assert cold_attrs["ollama.cold_load"] is True and warm_attrs["ollama.cold_load"] is False
    assert cold_attrs["ollama.load.duration"] == pytest.approx(cold.load_duration / 1e9)
    assert warm_attrs["ollama.prefill.duration"] == pytest.approx(warm.prompt_eval_duration / 1e9)
    assert warm_attrs["ollama.decode.duration"] == pytest.approx(warm.eval_duration / 1e9)
    assert warm_attrs["ollama.decode.tokens_per_second"] == pytest.approx(
        warm.eval_count / (warm.eval_duration / 1e9)
    )
    assert otel.metrics()[po.MODEL_LOADS].unit == "{load}"
    (loads,) = otel.points(po.MODEL_LOADS)
    assert loads.value == 2  # the first call and the one after the unload
    (decode,) = otel.points(po.DECODE_DURATION)
    assert decode.count == 3


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("stream", [False, True])
def test_content_is_captured_only_when_enabled(sim: SimulatedOllama, stream: bool) -> None:
    """capture_content=True records prompt and completion on the span (streamed text joined)."""
    import json

    with Otel(capture_content=True) as otel:
        client = ollama.Client(host=sim.url)
        result = client.chat(model="tiny", messages=MESSAGES, stream=stream)
        text = "".join(c.message.content for c in result) if stream else result.message.content
        client.generate(model="tiny", prompt="the prompt", system="be brief")
    chat, generate = otel.spans()
    inputs = json.loads(_attrs(chat)["gen_ai.input.messages"])
    assert inputs == [
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}
    ]
    outputs = json.loads(_attrs(chat)["gen_ai.output.messages"])
    assert outputs[0]["parts"][0]["content"] == text and outputs[0]["finish_reason"] == "stop"
    assert json.loads(_attrs(generate)["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "be brief"}
    ]
    otel.assert_all_documented()


def test_long_content_is_cut_to_the_limit_and_stays_json(sim: SimulatedOllama) -> None:
    """Captured content over 65,536 characters is cut inside its text, never mid-JSON."""
    import json

    from platform_otel.instrumentation.ollama import _MAX_CONTENT

    first, second = "a\n" * 30_000, 'b"' * 30_000  # escaped in JSON: 4 characters each
    with Otel(capture_content=True) as otel:
        ollama.Client(host=sim.url).chat(
            model="tiny",
            messages=[{"role": "user", "content": first}, {"role": "user", "content": second}],
        )
    (span,) = otel.spans()
    raw = _attrs(span)["gen_ai.input.messages"]
    assert _MAX_CONTENT - 100 < len(raw) <= _MAX_CONTENT
    messages = json.loads(raw)  # still valid JSON
    assert [m["role"] for m in messages] == ["user", "user"]
    kept = [m["parts"][0]["content"] for m in messages]
    assert first.startswith(kept[0]) and second.startswith(kept[1])
    assert kept[0] == first or kept[1] == ""  # the earliest text is kept first


def test_a_failing_content_capture_still_ends_the_span(
    sim: SimulatedOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in content capture is reported and swallowed: the call answers, its span ends."""
    from platform_otel.instrumentation import ollama as integration

    def broken(*args: Any) -> dict[str, str]:
        raise RuntimeError("capture bug")

    monkeypatch.delenv("PLATFORM_OTEL_RAISE_INTERNAL", raising=False)
    monkeypatch.setattr(integration, "_input_messages", broken)
    with Otel(capture_content=True) as otel:
        result = ollama.Client(host=sim.url).chat(model="tiny", messages=MESSAGES)
    assert result.message.content
    (span,) = otel.spans()
    assert "gen_ai.input.messages" not in _attrs(span)
    assert "gen_ai.output.messages" in _attrs(span)  # the rest of the capture still works


# --------------------------------------------------------------------------- residency


def test_residency_gauges_and_span_attribute(sim: SimulatedOllama) -> None:
    """/api/ps is polled after the first call: VRAM gauges per model and the ratio on later spans."""
    with Otel(ps_interval=0.1) as otel:
        requests_before = sim.requests
        time.sleep(0.3)
        assert sim.requests == requests_before  # no call, no poll (air-gapped pods stay quiet)
        client = ollama.Client(host=sim.url)
        client.chat(model="big-model:70b", messages=MESSAGES)
        time.sleep(0.4)
        client.chat(model="big-model:70b", messages=MESSAGES)
        ratio = {
            p.attributes["gen_ai.request.model"]: p.value
            for p in otel.points(_ollama_ps.MODEL_VRAM_RATIO)
        }
        assert ratio["big-model:70b"] == pytest.approx(0.42, abs=0.01)
        sizes = {
            p.attributes["gen_ai.request.model"]: p.value
            for p in otel.points(_ollama_ps.MODEL_VRAM_SIZE)
        }
        assert sizes["big-model:70b"] > 0
        (up,) = otel.points(_ollama_ps.UP)
        assert up.value == 1 and up.attributes["server.port"] == sim.port
        assert _attrs(otel.spans()[-1])["ollama.model.vram_ratio"] == pytest.approx(0.42, abs=0.01)
        metrics = otel.metrics()
        assert metrics[_ollama_ps.MODEL_SIZE].unit == "By"
        assert metrics[_ollama_ps.MODEL_VRAM_RATIO].unit == "1"
        otel.assert_all_documented()
        threads = [t for t in threading.enumerate() if t.name.startswith("platform-otel-ollama-ps")]
        assert len(threads) == 1
    threads[0].join(3)
    assert not threads[0].is_alive()  # uninstrument stops the poller


def test_poller_reports_down_and_recovers() -> None:
    """ollama.up is 0 while nothing answers, 1 once a server does; lookup is None meanwhile."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("t")
    port = free_port()
    poller = _ollama_ps.ResidencyPoller(f"http://127.0.0.1:{port}", meter, interval_s=0.1)
    assert poller.poll_once() is False and poller.up is False
    assert poller.lookup("tiny") is None

    def up_value() -> float:
        data = reader.get_metrics_data()
        return next(
            p.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == _ollama_ps.UP
            for p in m.data.data_points
        )

    assert up_value() == 0
    with SimulatedOllama(port=port, latency_s=0.0, chunks=1) as server:
        ollama.Client(host=server.url).generate(model="tiny", prompt="x")
        assert poller.poll_once() is True
        assert up_value() == 1
        assert poller.lookup("tiny") == 1.0 and poller.lookup("tiny:latest") == 1.0
    poller.stop()


def test_poller_is_fork_safe(sim: SimulatedOllama) -> None:
    """A forked child starts without the parent's thread or snapshot, and polls on start()."""
    meter = MeterProvider(shutdown_on_exit=False).get_meter("t")
    poller = _ollama_ps.ResidencyPoller(sim.url, meter, interval_s=0.05)
    poller.start()
    deadline = time.time() + 5
    while poller.up is None and time.time() < deadline:
        time.sleep(0.02)
    assert poller.up is True
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            if poller.up is None and poller.models() == {} and poller._thread is None:
                poller.start()
                end = time.time() + 5
                while poller.up is None and time.time() < end:
                    time.sleep(0.02)
                code = 0 if poller.up is True else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    poller.stop()
    assert os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------- GPU correlation


def test_gpu_state_is_merged_when_the_gpu_integration_is_active(
    otel: Otel, sim: SimulatedOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpu.correlate(start_ns, end_ns) goes on the span; gpu.metric_attributes() on the duration."""
    windows: list[tuple[int, int]] = []
    fake = types.ModuleType("platform_otel.instrumentation.gpu")

    def correlate(start_ns: int, end_ns: int) -> dict[str, Any]:
        windows.append((start_ns, end_ns))
        return {"hw.gpu.utilization.mean": 0.5, "hw.id": "GPU-fake"}

    fake.correlate = correlate  # type: ignore[attr-defined]
    fake.metric_attributes = lambda: {"hw.id": "GPU-fake"}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "platform_otel.instrumentation.gpu", fake)
    monkeypatch.setitem(registry._active, "gpu", fake)
    before = time.monotonic_ns()
    ollama.Client(host=sim.url).chat(model="tiny", messages=MESSAGES)
    after = time.monotonic_ns()
    span = _one_span(otel)
    assert _attrs(span)["hw.gpu.utilization.mean"] == 0.5
    ((start, end),) = windows
    assert before <= start < end <= after
    (point,) = otel.points(po.OPERATION_DURATION)
    assert point.attributes["hw.id"] == "GPU-fake"
    (usage, *_rest) = otel.points(po.TOKEN_USAGE)
    assert "hw.id" not in usage.attributes


def test_a_broken_gpu_module_never_breaks_the_call(
    otel: Otel, sim: SimulatedOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpu active but its correlate() raising: the call and its span are unaffected."""
    fake = types.ModuleType("platform_otel.instrumentation.gpu")

    def correlate(start_ns: int, end_ns: int) -> dict[str, Any]:
        raise RuntimeError("NVML went away")

    fake.correlate = correlate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "platform_otel.instrumentation.gpu", fake)
    monkeypatch.setitem(registry._active, "gpu", fake)
    assert ollama.Client(host=sim.url).chat(model="tiny", messages=MESSAGES).done
    assert _one_span(otel).status.status_code == StatusCode.UNSET


# --------------------------------------------------------------------------- lifecycle


def test_uninstrument_restores_the_client(sim: SimulatedOllama) -> None:
    """After uninstrument no span is made and the module-level shortcuts are the originals again."""
    original_chat = ollama.Client.chat
    original_module_chat = ollama.chat
    with Otel() as otel:
        assert ollama.Client.chat is not original_chat
        assert po.instrument(otel.ctx) is None  # twice: no second wrapper
        ollama.Client(host=sim.url).embed(model="tiny", input="x")
        assert len(otel.spans()) == 1
    assert ollama.Client.chat is original_chat
    assert ollama.chat == original_module_chat
    ollama.Client(host=sim.url).embed(model="tiny", input="x")
    assert len(otel.spans()) == 1


def test_importing_platform_otel_does_not_import_ollama(run_python: Any) -> None:
    """The integration stays optional: ``import platform_otel`` imports no ollama (nor httpx)."""
    result = run_python(
        "import sys, platform_otel\nprint('ollama' in sys.modules, 'httpx' in sys.modules)"
    )
    assert result.rc == 0, result
    assert result.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- over OTLP

OTLP_APP = """
import sys, ollama, platform_otel
from opentelemetry import trace

platform_otel.init()
client = ollama.Client(host=sys.argv[1])
model = sys.argv[2]
with trace.get_tracer("app").start_as_current_span("handle request") as parent:
    chunks = list(client.chat(model=model, messages=[{"role": "user", "content": "hi"}],
                              stream=True, options={"num_predict": 4}))
    client.embed(model=model, input="a document")
c = parent.get_span_context()
print(f"PARENT {c.trace_id:032x} {c.span_id:016x} {len(chunks)}", flush=True)
"""


def otlp_round_trip(receiver: OtlpReceiver, url: str, model: str) -> None:
    """init() in a fresh process, a streamed chat and an embed: spans, metrics, exemplars arrive."""
    import re

    result = run_python(
        OTLP_APP, otel_env(receiver, service_name="llm-app"), args=[url, model], timeout=60
    )
    assert result.rc == 0, str(result)
    match = re.search(r"PARENT (\w+) (\w+) (\d+)", result.stdout)
    assert match, str(result)
    trace_id, parent_id, chunk_count = match.groups()
    spans = receiver.wait_for(
        lambda r: [s for s in r.spans() if s.scope == "platform_otel.ollama"] or None, 10
    )
    assert [s.name for s in spans] == [f"chat {model}", f"embeddings {model}"]
    assert all(s.trace_id == trace_id and s.parent_span_id == parent_id for s in spans)
    # no HTTP client span from the httpx integration under the LLM spans
    assert not [s for s in receiver.spans() if s.kind == "CLIENT" and s.name.startswith("POST")]
    chat = spans[0]
    assert chat.attributes["gen_ai.usage.output_tokens"] == 4
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["length"]

    def exemplar_points(r: OtlpReceiver) -> Any:
        points = [
            p for p in r.metrics() if p.name == "gen_ai.client.operation.duration" and p.exemplars
        ]
        return points if len(points) >= 2 else None

    points = receiver.wait_for(exemplar_points, 10)
    linked = {(e["trace_id"], e["span_id"]) for p in points for e in p.exemplars}
    assert {(trace_id, s.span_id) for s in spans} <= linked
    names = {p.name for p in receiver.metrics()}
    assert {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "ollama.prefill.duration",
        "ollama.decode.duration",
        "ollama.decode.tokens_per_second",
    } <= names, names
    # one value per chunk after the first (a real server may send fewer chunks than tokens:
    # it holds back bytes that do not yet form a whole UTF-8 character)
    per_chunk = [
        p for p in receiver.metrics() if p.name == "gen_ai.client.operation.time_per_output_chunk"
    ]
    assert (per_chunk[-1].count if per_chunk else 0) == int(chunk_count) - 1


@pytest.mark.integration
def test_spans_metrics_and_exemplars_arrive_over_otlp(
    otlp_grpc_receiver: OtlpReceiver, sim: SimulatedOllama
) -> None:
    """With init() defaults (the ollama integration on by default), everything arrives over OTLP."""
    otlp_round_trip(otlp_grpc_receiver, sim.url, "tiny")


@pytest.mark.integration
def test_ollama_gpu_example_runs_without_gpu_or_ollama() -> None:
    """examples/ollama_gpu/run.py falls back to the simulated Ollama, says so, and prints its spans."""
    from tests.support.fixtures import REPO_ROOT

    port = free_port()
    result = run_python(
        (REPO_ROOT / "examples" / "ollama_gpu" / "run.py").read_text(),
        {
            "OLLAMA_HOST": f"127.0.0.1:{port}",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
        timeout=60,
    )
    assert result.rc == 0, str(result)
    out = result.stdout
    assert f"the Ollama at http://127.0.0.1:{port} does not answer: using the simulated" in out
    for line in ("chat llama3.2:1b  [CLIENT", "text_completion llama3.2:1b  [CLIENT",
                 "embeddings llama3.2:1b  [CLIENT", "ollama.cold_load = True", "error.type = 404"):  # fmt: skip
        assert line in out, out
    assert out.count("chat llama3.2:1b  [CLIENT") == 2  # the abandoned stream's span ended too


def test_measurements_never_link_to_an_unrelated_current_span(
    otel: Otel, sim: SimulatedOllama
) -> None:
    """Exemplars point at the LLM call's span or at nothing, never at the caller's span."""
    client = ollama.Client(host=sim.url)
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request handler") as outer:
        list(client.chat(model="tiny", messages=MESSAGES, stream=True))
    llm = next(s for s in otel.spans() if s.name == "chat tiny")
    assert llm.parent is not None and llm.parent.span_id == outer.get_span_context().span_id
    linked = {
        e.span_id
        for metric in otel.metrics().values()
        for p in metric.data.data_points
        for e in getattr(p, "exemplars", ())
    }
    assert linked == {llm.context.span_id}


# --------------------------------------------------------------------------- Prometheus names

PROM_NAMES = (
    "gen_ai_client_operation_duration_seconds_bucket",
    "gen_ai_client_token_usage_bucket",
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
    "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
    "ollama_prefill_duration_seconds_bucket",
    "ollama_decode_duration_seconds_bucket",
    # unit {token}: the name already says per second; nothing is appended
    "ollama_decode_tokens_per_second_bucket",
    "ollama_model_loads_total",
    "ollama_model_vram_ratio",
    "ollama_model_size_bytes",
    "ollama_model_vram_size_bytes",
    "ollama_up",
)


@pytest.mark.integration
def test_prometheus_names_rendered_by_the_collector(
    tmp_path: Any, sim: SimulatedOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar collector renders the Ollama metrics under the names docs/ollama.md's queries
    use, with exemplars on the duration buckets (needs the built collector)."""
    from tests.support.demo_stack import stack as demo_stack
    from tests.support.fixtures import start_process, wait_http
    from tests.test_collector import CONFIG, _scrape, collector_env

    found = demo_stack.otelcol_binary()
    if found is None or not os.access(found, os.X_OK):
        pytest.skip(f"collector binary not built ({found}): run collector/build.sh")
    binary = str(found)
    tempo, loki = OtlpReceiver("grpc").start(), OtlpReceiver("http").start()
    try:
        env, ports = collector_env(tmp_path, tempo.port, loki.endpoint)
        with start_process([binary, "--config", str(CONFIG)], env) as collector:
            wait_http(f"http://127.0.0.1:{ports.health}/", collector, timeout=20)
            app = OTLP_APP.replace("platform_otel.init()", "platform_otel.init(); import time")
            # one /api/ps poll with the model loaded, then a last call: the SDK keeps exemplars
            # until the next export, and the exit's final export carries this call's
            app += "time.sleep(1.0)\nclient.chat(model=model, messages=[{'role': 'user', 'content': 'x'}])\n"
            ran = run_python(
                app,
                {
                    "OTEL_SERVICE_NAME": "llm-app",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.grpc}",
                    "OTEL_METRIC_EXPORT_INTERVAL": "300",
                    "PLATFORM_OTEL_OLLAMA_PS_INTERVAL": "0.2",
                },
                # a model no other test loads: its first call is a cold load (loads counter)
                args=[sim.url, "nomic-embed-text"],
                timeout=60,
            )
            assert ran.rc == 0, str(ran)
            endpoint = f"127.0.0.1:{ports.prometheus}"
            deadline = time.monotonic() + 15
            text = _scrape(endpoint)
            while not all(n in text for n in PROM_NAMES) and time.monotonic() < deadline:
                time.sleep(0.3)
                text = _scrape(endpoint)
    finally:
        tempo.stop()
        loki.stop()
    missing = [n for n in PROM_NAMES if n not in text]
    types_ = sorted({line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")})
    assert not missing, f"not on the collector's /metrics: {missing}; it has {types_}"
    assert 'gen_ai_request_model="nomic-embed-text"' in text
    assert 'gen_ai_token_type="output"' in text
    duration = [
        line
        for line in text.splitlines()
        if line.startswith("gen_ai_client_operation_duration_seconds_bucket") and "trace_id" in line
    ]
    assert duration, "no exemplar on the duration buckets"
