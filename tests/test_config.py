"""Configuration: argument > environment > default, and bad values never raise."""

from __future__ import annotations

import pytest

from platform_otel import ConfigError
from platform_otel._config import InitOptions, load_settings


def problems_for(env: dict[str, str]) -> list[str]:
    return [str(p) for p in load_settings(env).problems]


def test_defaults_follow_the_otel_specification() -> None:
    """With no configuration, OTLP/gRPC to localhost:4317, always-on parent-based sampling."""
    s = load_settings({})
    assert s.traces.endpoint == "http://localhost:4317"
    assert s.traces.protocol == "grpc"
    assert s.traces.exporters == ("otlp",)
    assert s.sampler == "parentbased_always_on"
    assert s.propagators == ("tracecontext", "baggage")
    assert s.metric_export_interval == 60.0
    assert s.capture_content is False
    assert s.problems == ()


def test_argument_beats_environment_beats_default() -> None:
    """An init() argument wins over its OTEL_* variable."""
    env = {"OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert load_settings(env).service_name == "from-env"
    assert load_settings(env, InitOptions(service_name="from-arg")).service_name == "from-arg"
    assert load_settings(env).traces.protocol == "http/protobuf"
    assert load_settings(env, InitOptions(protocol="grpc")).traces.protocol == "grpc"


def test_http_endpoint_gets_signal_paths_but_per_signal_endpoint_is_used_verbatim() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT + /v1/<signal> for HTTP; the per-signal variable as given."""
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://loki:3100/otlp/v1/logs",
    }
    s = load_settings(env)
    assert s.traces.endpoint == "http://collector:4318/v1/traces"
    assert s.metrics.endpoint == "http://collector:4318/v1/metrics"
    assert s.logs.endpoint == "http://loki:3100/otlp/v1/logs"


def test_per_signal_protocol_headers_and_exporters() -> None:
    """Per-signal OTEL_* variants override the generic ones."""
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=3",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "console,otlp",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    s = load_settings(env)
    assert dict(s.traces.headers) == {"a": "1", "b": "3"}
    assert s.metrics.protocol == "http/protobuf" and s.traces.protocol == "grpc"
    assert s.logs.exporters == ()
    assert s.metrics.exporters == ("console", "otlp")
    assert s.traces.compression == "gzip"


@pytest.mark.parametrize(
    ("env", "variable", "used"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "bogus"}, "OTEL_EXPORTER_OTLP_PROTOCOL", "'grpc'"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "abc"}, "OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ({"OTEL_METRICS_EXEMPLAR_FILTER": "nope"}, "OTEL_METRICS_EXEMPLAR_FILTER", "'trace_based'"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
            "1.0",
        ),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "team=data,broken"},
            "OTEL_RESOURCE_ATTRIBUTES",
            "{'team': 'data'}",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "'http://collector:4317'",
        ),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-5"}, "OTEL_BSP_MAX_QUEUE_SIZE", "2048"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", "'otlp'"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED", "False"),
        ({"PLATFORM_OTEL_PROMETHEUS_PORT": "99999"}, "PLATFORM_OTEL_PROMETHEUS_PORT", "-1"),
    ],
)
def test_bad_value_names_variable_value_and_replacement(
    env: dict[str, str], variable: str, used: str
) -> None:
    """Each bad value yields one problem naming the variable, the bad value and what is used."""
    problems = problems_for(env)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{variable}={env[variable]!r} is invalid")
    assert problems[0].endswith(f"using {used}")


def test_bad_values_are_replaced_by_safe_ones() -> None:
    """The replacement value is what the settings actually contain."""
    s = load_settings(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus",
            "OTEL_TRACES_SAMPLER_ARG": "2",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        }
    )
    assert s.traces.protocol == "grpc"
    assert s.sampler_arg == 1.0
    assert s.traces.endpoint == "http://collector:4317"


def test_strict_mode_raises_one_error_listing_every_problem() -> None:
    """strict=True turns all problems into a single ConfigError."""
    import platform_otel._telemetry as t

    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "bogus", "OTEL_METRIC_EXPORT_INTERVAL": "abc"}
    settings = load_settings(env, InitOptions(strict=True))
    assert settings.strict and len(settings.problems) == 2
    err = ConfigError(list(settings.problems))
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='bogus'" in str(err)
    assert "OTEL_METRIC_EXPORT_INTERVAL='abc'" in str(err)
    assert t.current() is None  # nothing was installed by merely loading settings


def test_sample_ratio_argument_and_disabled_instrumentations() -> None:
    """sample_ratio maps to parent-based ratio sampling; OTEL_PYTHON_DISABLED_INSTRUMENTATIONS is honoured."""
    s = load_settings(
        {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests, httpx"}, InitOptions(sample_ratio=0.25)
    )
    assert (s.sampler, s.sampler_arg) == ("parentbased_traceidratio", 0.25)
    assert "requests" not in s.integrations and "httpx" not in s.integrations
    assert "fastapi" in s.integrations


def test_resource_attributes_feed_service_identity() -> None:
    """OTEL_RESOURCE_ATTRIBUTES supplies service.version and the environment when not given otherwise."""
    s = load_settings(
        {
            "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.2,deployment.environment.name=prod,team=a%20b"
        }
    )
    assert s.service_version == "1.2"
    assert s.environment == "prod"
    assert s.resource_attributes["team"] == "a b"


def test_timeouts_accept_milliseconds_per_spec() -> None:
    """OTEL_EXPORTER_OTLP_TIMEOUT is milliseconds (spec); small values are read as seconds (old Python SDK)."""
    assert load_settings({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}).traces.timeout == 2.5
    assert load_settings({"OTEL_EXPORTER_OTLP_TIMEOUT": "3"}).traces.timeout == 3.0


def test_settings_as_dict_hides_header_values() -> None:
    """doctor output never prints credentials from OTEL_EXPORTER_OTLP_HEADERS."""
    d = load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20secret"}).as_dict()
    assert d["traces"]["headers"] == {"authorization": "***"}
    assert "secret" not in repr(d)


def test_bad_excluded_url_pattern_is_reported_and_left_out() -> None:
    """An invalid regular expression in OTEL_PYTHON_EXCLUDED_URLS is named in one problem and
    left out; the valid ones still apply, and a non-callable hook is reported, not kept."""
    s = load_settings(
        {"OTEL_PYTHON_EXCLUDED_URLS": "health,(unclosed"},
        InitOptions(server_request_hook="not a function"),  # type: ignore[arg-type]
    )
    assert s.http_excluded_urls == ("health",)
    assert s.server_request_hook is None
    problems = [str(p) for p in s.problems]
    assert any("OTEL_PYTHON_EXCLUDED_URLS" in p and "(unclosed" in p for p in problems), problems
    assert any("server_request_hook" in p for p in problems), problems
