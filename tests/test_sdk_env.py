"""Typed init arguments, and bad ``OTEL_*`` values handled without writing ``os.environ``.

The SDK raises on some bad values it reads itself (at import, or when building
limits); ``init()`` reports them and makes the SDK use its default, while the
process environment stays exactly as the application set it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import platform_otel
from platform_otel._config import InitOptions, load_settings, sdk_environment
from tests.support.fixtures import run_python


def test_every_init_argument_is_a_typed_option_and_reaches_settings() -> None:
    """init()'s keyword arguments are exactly InitOptions' fields; each one is used by load_settings."""
    params = inspect.signature(platform_otel.init).parameters
    fields = {f.name: f for f in dataclasses.fields(InitOptions)}
    assert set(params) == set(fields)
    s = load_settings(
        {"PLATFORM_OTEL_LOG_EXPORT": "true"},
        InitOptions(log_export=False, log_export_access=True, shutdown_timeout=2.5),
    )
    assert (s.log_export, s.log_export_access, s.shutdown_timeout) == (False, True, 2.5)
    assert dataclasses.is_dataclass(s) and s.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_sdk_environment_hides_only_what_the_sdk_would_raise_on() -> None:
    env = {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "abc",
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "12",
        "OTEL_PROPAGATORS": "tracecontext,bogus,baggage",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",
    }
    assert sdk_environment(env) == {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": None,
        "OTEL_PROPAGATORS": "tracecontext,baggage",
    }
    assert sdk_environment({}) == {"OTEL_SEMCONV_STABILITY_OPT_IN": "http,database"}


APP = """
import json, os
before = dict(os.environ)
import platform_otel
tel = platform_otel.init(service_name="svc", exporters={"traces": ["console"], "metrics": ["none"], "logs": ["none"]})
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap  # would raise at import on 'bogus'
import requests  # instrumented by the contrib instrumentor, which reads OTEL_SEMCONV_STABILITY_OPT_IN
tracer = trace.get_tracer("app")
with tracer.start_as_current_span("work") as span:
    for i in range(25):
        span.set_attribute(f"a{i}", i)
    try:
        requests.get("http://127.0.0.1:9/unreachable", timeout=0.5)
    except Exception:
        pass
tel.force_flush()
after = dict(os.environ)
print("ENV_UNCHANGED", before == after, sorted(set(before.items()) ^ set(after.items())), flush=True)
print("FIELDS", json.dumps(sorted(get_global_textmap().fields)), flush=True)
"""


def test_bad_values_are_reported_used_by_the_sdk_and_environ_is_untouched() -> None:
    """init() with values the SDK raises on: the app runs, spans are made, os.environ is unchanged."""
    env = {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "abc",  # the SDK raises on it at import
        "OTEL_ATTRIBUTE_COUNT_LIMIT": "20",  # valid: the SDK still applies it
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "-1",  # SpanLimits() raises on it
        "OTEL_PROPAGATORS": "tracecontext,bogus",  # opentelemetry.propagate raises at import
        "PLATFORM_OTEL_LOG_CONSOLE": "never",
    }
    result = run_python(APP, env, timeout=30)
    assert result.rc == 0, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert "ENV_UNCHANGED True []" in result.stdout, str(result)
    for name, value in [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1"),
        ("OTEL_PROPAGATORS", "bogus"),
    ]:
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1 and repr(value) in lines[0], str(result)
    spans = _console_spans(result.stdout)
    work = spans["work"]
    # OTEL_ATTRIBUTE_COUNT_LIMIT=20 applies (the invalid span-specific limit falls back to it)
    assert len(work["attributes"]) == 20, work
    client = spans["GET"]
    # OTEL_SEMCONV_STABILITY_OPT_IN unset: the contrib instrumentor emits the stable names.
    assert client["attributes"]["http.request.method"] == "GET", client
    assert json.loads(result.stdout.split("FIELDS ", 1)[1].splitlines()[0]) == [
        "traceparent",
        "tracestate",
    ]


def _console_spans(stdout: str) -> dict[str, dict[str, object]]:
    """The ConsoleSpanExporter's JSON objects, by span name."""
    spans: dict[str, dict[str, object]] = {}
    decoder = json.JSONDecoder()
    pos = stdout.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(stdout, pos)
        except ValueError:
            pos = stdout.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and "name" in obj:
            spans[str(obj["name"])] = obj
        pos = stdout.find("{", end)
    return spans


def test_span_limit_overrides_replace_only_rejected_variables() -> None:
    from platform_otel._config import span_limit_overrides

    assert span_limit_overrides({"OTEL_SPAN_EVENT_COUNT_LIMIT": "12"}) == {}
    assert span_limit_overrides(
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "abc", "OTEL_ATTRIBUTE_COUNT_LIMIT": "20"}
    ) == {"max_span_attributes": 20}
    assert span_limit_overrides(
        {"OTEL_ATTRIBUTE_COUNT_LIMIT": "x", "OTEL_SPAN_LINK_COUNT_LIMIT": "-1"}
    ) == {"max_attributes": None, "max_links": 128}


SDK_FIRST_APP = """
import os
from opentelemetry.sdk.trace import TracerProvider  # imported before init(): sees the real env
before = dict(os.environ)
import platform_otel
tel = platform_otel.init(service_name="svc", exporters={"traces": ["console"], "metrics": ["none"], "logs": ["none"]})
from opentelemetry import trace
with trace.get_tracer("app").start_as_current_span("work") as span:
    for i in range(140):
        span.add_event(f"e{i}")
    for i in range(30):
        span.set_attribute(f"a{i}", i)
tel.force_flush()
print("ENV_UNCHANGED", before == dict(os.environ), flush=True)
"""


def test_bad_limit_with_the_sdk_imported_before_init() -> None:
    """The SDK imported first: SpanLimits() would raise on the bad value; init() passes explicit limits."""
    env = {
        "OTEL_SPAN_EVENT_COUNT_LIMIT": "abc",
        "OTEL_ATTRIBUTE_COUNT_LIMIT": "20",
        "PLATFORM_OTEL_LOG_CONSOLE": "never",
    }
    result = run_python(SDK_FIRST_APP, env, timeout=30)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    assert "ENV_UNCHANGED True" in result.stdout, str(result)
    lines = [line for line in result.stderr.splitlines() if "OTEL_SPAN_EVENT_COUNT_LIMIT" in line]
    assert len(lines) == 1 and "'abc'" in lines[0], str(result)
    work = _console_spans(result.stdout)["work"]
    assert len(work["events"]) == 128, len(work["events"])  # the SDK default
    assert len(work["attributes"]) == 20  # the valid variable still applies
