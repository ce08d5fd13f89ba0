"""Every LLM call measured: Ollama calls traced with GenAI spans and metrics, GPU state attached.

Runs anywhere: it uses a real Ollama at ``OLLAMA_HOST`` (default ``127.0.0.1:11434``)
when one answers and has the model (``OLLAMA_MODEL``, default ``llama3.2:1b``),
else the simulated Ollama that ships with platform-otel, and says which. With an
NVIDIA GPU and ``nvidia-ml-py`` installed the ``gpu`` integration adds the GPU's
state over each call to its span; without one it is off (one info line).

It makes a non-streamed chat, a streamed generate (read to the end), a stream
abandoned after two chunks, an embed and a call to a model that does not exist,
then prints, for each span, what an operator would look at. Spans and metrics
also go to the OTLP endpoint configured as usual (``OTEL_EXPORTER_OTLP_ENDPOINT``;
default ``localhost:4317``, e.g. the sidecar collector in collector/).

    python examples/ollama_gpu/run.py
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import platform_otel

telemetry = platform_otel.init(service_name="ollama-gpu-example")

import ollama  # noqa: E402 - after init(), so the integration is on before the first call
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

MODEL = os.environ.get("OLLAMA_MODEL", "llama3.2:1b")
SHOWN = (
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.time_to_first_chunk",
    "ollama.cold_load",
    "ollama.load.duration",
    "ollama.prefill.duration",
    "ollama.decode.tokens_per_second",
    "ollama.model.vram_ratio",
    "error.type",
)


class Printer(SpanExporter):
    """Prints each Ollama span as it ends (the OTLP exporter still gets it too)."""

    def export(self, spans: Any) -> SpanExportResult:
        for span in spans:
            self._print(span)
        return SpanExportResult.SUCCESS

    @staticmethod
    def _print(span: ReadableSpan) -> None:
        attrs = dict(span.attributes or {})
        if attrs.get("gen_ai.provider.name") != "ollama":
            return
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        print(
            f"\n{span.name}  [{span.kind.name}, {ms:.1f} ms, status {span.status.status_code.name}]"
        )
        for key in SHOWN:
            if key in attrs:
                value = attrs[key]
                print(f"    {key} = {round(value, 4) if isinstance(value, float) else value}")
        gpu = {k: v for k, v in attrs.items() if k.startswith(("gpu.", "hw."))}
        print(
            f"    GPU over the call: {gpu}"
            if gpu
            else "    GPU over the call: (no gpu integration)"
        )


@contextlib.contextmanager
def ollama_server() -> Iterator[str]:
    host = os.environ.get("OLLAMA_HOST") or "127.0.0.1:11434"
    url = host if "://" in host else f"http://{host}"
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=1.0) as response:
            names = {m.get("name") for m in json.loads(response.read()).get("models", [])}
    except (OSError, ValueError):
        names = None
    if names is not None and (MODEL in names or f"{MODEL}:latest" in names):
        print(f"using the real Ollama at {url} (model {MODEL})")
        yield url
        return
    from platform_otel._ollama_sim import SimulatedOllama

    reason = "does not answer" if names is None else f"has no model {MODEL}"
    with SimulatedOllama(latency_s=0.3, chunks=24, load_s=0.5) as sim:
        print(f"the Ollama at {url} {reason}: using the simulated Ollama at {sim.url}")
        yield sim.url


def main() -> int:
    provider = trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if add is not None:
        add(SimpleSpanProcessor(Printer()))
    from platform_otel.instrumentation import status

    for name in ("ollama", "gpu"):
        print(f"integration {name}: {status(name).reason}")
    with ollama_server() as url:
        client = ollama.Client(host=url)
        messages = [{"role": "user", "content": "Why do GPUs speed up inference?"}]
        client.chat(model=MODEL, messages=messages, options={"num_predict": 32})
        text = "".join(c.response or "" for c in client.generate(
            model=MODEL, prompt="Name three colours.", stream=True, options={"num_predict": 24}
        ))  # fmt: skip
        print(f"\n(streamed answer: {text[:60]!r}...)")
        stream = client.chat(model=MODEL, messages=messages, stream=True)
        for n, _chunk in enumerate(stream):
            if n == 1:
                break  # abandoned: its span still ends, at the last chunk read
        del stream
        gc.collect()
        client.embed(model=MODEL, input=["GPU memory", "model residency"])
        try:
            client.chat(model="no-such-model", messages=messages)
        except ollama.ResponseError as exc:
            print(f"\n(expected error: {exc})")
    telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
