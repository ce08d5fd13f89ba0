"""The benchmark app: a FastAPI hello-world route, instrumented according to BENCH_MODE.

Modes (env ``BENCH_MODE``):

* ``none``: no telemetry at all (the baseline);
* ``platform``: ``platform_otel.init()`` called after the app is created, so the
  "app created before init()" path is the one measured;
* ``platform-python-encoder``: ``platform`` with ``PLATFORM_OTEL_OTLP_ENCODER=python``
  (the pure-Python wire encoder, without the optional C extension);
* ``platform-official-encoder``: ``platform`` with ``PLATFORM_OTEL_OTLP_ENCODER=official``
  (the official OTLP encoder instead of ``platform_otel._otlp_fast``);
* ``<mode>-sampled``: ``<mode>`` with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
  ``OTEL_TRACES_SAMPLER_ARG=0.1`` (every request still in the histogram);
* ``lean-manual``: platform-otel's lean FastAPI path with SDK providers built by
  hand (OTLP/gRPC exporters, batch processors), no ``init()``;
* ``lean-fast``: ``lean-manual`` with ``platform_otel._otlp_fast.FastOTLPSpanExporter``;
* ``lean-sdk-only`` / ``lean-noop``: the lean path with SDK providers that export
  nothing / with no-op providers (cost breakdown in ``bench_asgi_overhead.py``);
* ``official-app``: ``FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])``
  with hand-built SDK providers exporting over OTLP/gRPC, plus the official
  logging instrumentation (trace ids on log records): the official tooling
  configured for the same telemetry as ``platform``;
* ``none`` under ``opentelemetry-instrument``: the official zero-code path (the
  runner wraps the command).

Exporter endpoint and protocol come from the standard ``OTEL_*`` variables.
``BENCH_GC_STATS=<path>`` writes the process's garbage-collection counts and time
to ``<path>`` (``bench_gc.py``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

MODE = os.environ.get("BENCH_MODE", "none")
# Extra variables for an experiment, e.g. BENCH_ENV="OTEL_TRACES_EXPORTER=none;OTEL_LOGS_EXPORTER=none"
for _item in filter(None, os.environ.get("BENCH_ENV", "").split(";")):
    _key, _, _value = _item.partition("=")
    os.environ[_key] = _value


def _write_gc_stats(path: str) -> None:
    """Count garbage collections and their time, written to ``path`` as JSON (bench_gc.py)."""
    import gc
    import json
    import threading
    import time

    stats = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            generation = info["generation"]
            stats["collections"][generation] += 1
            stats["seconds"][generation] += time.perf_counter() - started[0]

    def writer() -> None:
        while True:
            time.sleep(0.2)
            with open(path + ".tmp", "w") as f:
                json.dump(stats, f)
            os.replace(path + ".tmp", path)

    gc.callbacks.append(callback)
    threading.Thread(target=writer, daemon=True).start()


if os.environ.get("BENCH_GC_STATS"):
    _write_gc_stats(os.environ["BENCH_GC_STATS"])

app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


def _sdk_providers(fast: bool = False) -> tuple[object, object]:
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "bench-hello"})
    tracer_provider = TracerProvider(resource=resource)
    if fast:
        from platform_otel._fast.otlp import FastOTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(FastOTLPSpanExporter()))
    else:
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


def _instrument_lean(tracer_provider: object, meter_provider: object) -> None:
    """platform-otel's lean FastAPI path on the given providers, without init()."""
    from platform_otel import _fast
    from platform_otel._config import InitOptions, load_settings
    from platform_otel.instrumentation import InstrumentationContext
    from platform_otel.instrumentation import fastapi as _pf

    _fast.enable()
    _pf.instrument(
        InstrumentationContext(
            settings=load_settings(
                None, InitOptions(service_name="bench-hello", fastapi_impl="lean")
            ),
            tracer_provider=tracer_provider,  # type: ignore[arg-type]
            meter_provider=meter_provider,  # type: ignore[arg-type]
            logger_provider=None,
        )
    )


if MODE.endswith("-sampled"):
    # Head sampling through the standard variables: 10% of traces recorded, every
    # request still counted in the duration histogram.
    os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    os.environ.setdefault("OTEL_TRACES_SAMPLER_ARG", "0.1")
    MODE = MODE.removesuffix("-sampled")

if MODE == "platform-python-encoder":
    # init() with the pure-Python wire encoder (what an install without a C compiler gets).
    os.environ["PLATFORM_OTEL_OTLP_ENCODER"] = "python"
    MODE = "platform"

if MODE == "platform-official-encoder":
    # init() with the official OTLP encoder instead of platform_otel._otlp_fast.
    os.environ["PLATFORM_OTEL_OTLP_ENCODER"] = "official"
    MODE = "platform"

if MODE == "platform":
    import platform_otel

    platform_otel.init(service_name="bench-hello")
elif MODE in ("lean-manual", "lean-fast"):
    tp, mp = _sdk_providers(fast=MODE == "lean-fast")
    _instrument_lean(tp, mp)
elif MODE in ("lean-sdk-only", "lean-noop", "lean-span-only", "lean-hist-only"):
    # Cost breakdown: the lean path with SDK providers that export nothing
    # (span + histogram work only), or with no-op providers (our code only).

    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    tp = (
        _trace.NoOpTracerProvider() if MODE in ("lean-noop", "lean-hist-only") else TracerProvider()
    )
    mp = (
        _metrics.NoOpMeterProvider()
        if MODE in ("lean-noop", "lean-span-only")
        else MeterProvider(metric_readers=[InMemoryMetricReader()])
    )
    _instrument_lean(tp, mp)
elif MODE == "official-app":
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    tp, mp = _sdk_providers()
    LoggingInstrumentor().instrument(tracer_provider=tp)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tp, meter_provider=mp, exclude_spans=["receive", "send"]
    )
