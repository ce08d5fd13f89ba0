"""Bad ``OTEL_*`` values give one clear warning each, never an exception; strict mode lists them all."""

from __future__ import annotations

import socket

import pytest

from tests.support.fixtures import (
    otel_env,
    run_python,
)
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

APP = """
import logging
import platform_otel
tel = platform_otel.init()
from opentelemetry import trace
with trace.get_tracer("app").start_as_current_span("still-works"):
    pass
print("APP_DONE", flush=True)
"""

# (variables, the variable to be named, the bad value, the value that must be reported as used)
CASES = [
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "bogus"}, "OTEL_EXPORTER_OTLP_PROTOCOL", "bogus", "grpc"),
    ({"OTEL_METRIC_EXPORT_INTERVAL": "abc"}, "OTEL_METRIC_EXPORT_INTERVAL", "abc", "60000"),
    (
        {"OTEL_METRICS_EXEMPLAR_FILTER": "nope"},
        "OTEL_METRICS_EXEMPLAR_FILTER",
        "nope",
        "trace_based",
    ),
    (
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
        "OTEL_TRACES_SAMPLER_ARG",
        "2",
        "1.0",
    ),
    ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG", "2", ""),
    (
        {"OTEL_RESOURCE_ATTRIBUTES": "team=data,oops,tier=gold"},
        "OTEL_RESOURCE_ATTRIBUTES",
        "oops",
        "team",
    ),
]


@pytest.mark.parametrize(
    ("variables", "name", "bad", "used"), CASES, ids=[f"{c[1]}={c[2]}" for c in CASES]
)
def test_bad_value_warns_naming_variable_value_and_fallback(
    variables: dict[str, str], name: str, bad: str, used: str, otlp_grpc_receiver: OtlpReceiver
) -> None:
    """A bad OTEL_* value: init() does not raise, the app runs, one warning names variable, value and the value used."""
    env = otel_env(None, PLATFORM_OTEL_LOG_CONSOLE="never", **variables)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_grpc_receiver.endpoint
    result = run_python(APP, env, timeout=30)
    assert result.rc == 0 and "APP_DONE" in result.stdout, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if name in line]
    assert len(lines) == 1, f"expected one warning naming {name}:\n{result}"
    assert bad in lines[0], str(result)
    assert used in lines[0], f"the warning should say which value is used ({used}):\n{result}"


def test_endpoint_without_scheme_is_repaired_and_used(otlp_grpc_receiver: OtlpReceiver) -> None:
    """`OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:PORT` warns, is used as http://127.0.0.1:PORT, and spans arrive."""
    hostport = otlp_grpc_receiver.endpoint.removeprefix("http://")
    env = otel_env(None, OTEL_EXPORTER_OTLP_ENDPOINT=hostport, PLATFORM_OTEL_LOG_CONSOLE="never")
    result = run_python(APP, env, timeout=30)
    assert result.rc == 0 and "APP_DONE" in result.stdout, str(result)
    lines = [line for line in result.stderr.splitlines() if "OTEL_EXPORTER_OTLP_ENDPOINT" in line]
    assert len(lines) == 1 and f"http://{hostport}" in lines[0], str(result)
    spans = otlp_grpc_receiver.wait_for(lambda r: r.spans(), 10)
    assert spans[0].name == "still-works"


def test_prometheus_port_in_use_warns() -> None:
    """A Prometheus port already bound by someone else gives a warning naming it; init() and the app go on."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = otel_env(
            None,
            PLATFORM_OTEL_PROMETHEUS_PORT=str(port),
            PLATFORM_OTEL_PROMETHEUS_HOST="127.0.0.1",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            PLATFORM_OTEL_LOG_CONSOLE="never",
        )
        result = run_python(APP, env, timeout=30)
    assert result.rc == 0 and "APP_DONE" in result.stdout, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if str(port) in line]
    assert len(lines) == 1, f"expected one warning naming port {port}:\n{result}"
    assert "prometheus" in lines[0].lower(), str(result)


STRICT_APP = """
import platform_otel
try:
    platform_otel.init()
except Exception as exc:
    print(f"RAISED={type(exc).__name__}")
    print(exc)
else:
    print("RAISED=nothing")
"""


def test_strict_mode_raises_one_config_error_listing_every_problem() -> None:
    """PLATFORM_OTEL_STRICT=1 turns all bad values into one ConfigError that lists each of them."""
    bad = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus",
        "OTEL_METRIC_EXPORT_INTERVAL": "abc",
        "OTEL_METRICS_EXEMPLAR_FILTER": "nope",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "2",
        "OTEL_RESOURCE_ATTRIBUTES": "team=data,oops",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317",
    }
    env = otel_env(None, PLATFORM_OTEL_STRICT="1", **bad)
    result = run_python(STRICT_APP, env, timeout=30)
    assert result.rc == 0, str(result)
    assert "RAISED=ConfigError" in result.stdout, str(result)
    for name, value in bad.items():
        if name == "OTEL_TRACES_SAMPLER":
            continue  # valid; only its argument is bad
        assert name in result.stdout and value in result.stdout, f"{name} not listed:\n{result}"


# Variables the SDK or the OTLP exporters parse themselves, where a bad value used to
# crash the import of opentelemetry.sdk.trace or break every export.
SDK_PARSED = [
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc", "the SDK default"),
    ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "-1", "the SDK default"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "bogus", "none"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "maybe", "insecure for http://"),
]


@pytest.mark.parametrize(
    ("name", "bad", "used"), SDK_PARSED, ids=[f"{c[0]}={c[1]}" for c in SDK_PARSED]
)
def test_bad_value_of_a_variable_the_sdk_parses_still_exports(
    name: str, bad: str, used: str, otlp_grpc_receiver: OtlpReceiver
) -> None:
    """A bad value the SDK would choke on: one warning, init() works, and spans still arrive."""
    env = otel_env(None, PLATFORM_OTEL_LOG_CONSOLE="never", **{name: bad})
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_grpc_receiver.endpoint
    result = run_python(APP, env, timeout=30)
    assert result.rc == 0 and "APP_DONE" in result.stdout, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if name in line]
    assert len(lines) == 1 and bad in lines[0] and used in lines[0], str(result)
    spans = otlp_grpc_receiver.wait_for(lambda r: r.spans(), 10)
    assert spans[0].name == "still-works"
