"""All configuration parsing, in one place.

Precedence is: keyword argument to ``init()`` > environment variable > default.
The standard ``OTEL_*`` variables keep their OpenTelemetry meaning; settings the
specification does not cover use ``PLATFORM_OTEL_*`` names.

A bad value never raises from ``init()``: it becomes a :class:`Problem` naming the
variable, the bad value and the value used instead, logged once as a warning.
With ``strict=True`` (or ``PLATFORM_OTEL_STRICT=1``) all problems are raised
together as one :class:`ConfigError`.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "SEMCONV_OPT_IN",
    "ConfigError",
    "InitOptions",
    "Problem",
    "Settings",
    "SignalSettings",
    "load_settings",
    "sdk_environment",
]

Protocol = Literal["grpc", "http/protobuf"]
_PROTOCOLS = ("grpc", "http/protobuf")
_SIGNALS = ("traces", "metrics", "logs")
_EXPORTERS = {
    "traces": ("otlp", "console", "none"),
    "metrics": ("otlp", "console", "prometheus", "none"),
    "logs": ("otlp", "console", "none"),
}
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "ottrace", "none")
_EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")
_TEMPORALITIES = ("cumulative", "delta", "lowmemory")
_COMPRESSIONS = ("none", "gzip", "deflate")
_LOG_FORMATS = ("text", "json")
_FASTAPI_IMPLS = ("lean", "official", "native")
# The stable semantic conventions platform-otel asks contrib instrumentors for (when the
# variable is unset). "database" also turns on db.client.operation.duration in the DB-API
# (psycopg, pymysql) instrumentors.
SEMCONV_OPT_IN = "http,database"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
# Read by the SDK itself (SpanLimits, LogRecordLimits), which raises on a bad value.
_LIMIT_VARIABLES = (
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
)
DEFAULT_INTEGRATIONS = ("logging", "fastapi", "httpx", "requests", "mcp", "ollama", "gpu")


class ConfigError(ValueError):
    """Raised by ``init(strict=True)``; lists every configuration problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid platform-otel configuration:\n{lines}")


@dataclass(frozen=True)
class Problem:
    """One bad setting: where it came from, what it was, what is used instead."""

    variable: str
    value: object
    used: object
    reason: str = ""

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.variable}={self.value!r} is invalid{why}; using {self.used!r}"


@dataclass(frozen=True)
class InitOptions:
    """The keyword arguments of ``platform_otel.init()``; None means "not given".

    A value given here wins over its environment variable, which wins over the
    default (docs/configuration.md). :func:`load_settings` validates them.
    """

    service_name: str | None = None
    service_version: str | None = None
    environment: str | None = None
    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] | str | None = None
    resource_attributes: Mapping[str, str] | None = None
    prometheus_port: int | None = None
    instrument: Sequence[str] | str | None = None
    disable: Sequence[str] | str | None = None
    log_format: str | None = None
    log_level: str | None = None
    log_console: str | None = None
    log_export: bool | None = None
    log_export_access: bool | None = None
    capture_content: bool | None = None
    sample_ratio: float | None = None
    fastapi_impl: str | None = None
    shutdown_timeout: float | None = None
    strict: bool | None = None
    #: ``{"traces": ["console"], ...}``: exporters per signal (tests, embedding).
    exporters: Mapping[str, Sequence[str]] | None = None
    gpu_interval: float | None = None
    #: ``hook(span, scope)`` when an HTTP server span starts (after ``http.route`` is set).
    server_request_hook: Callable[[Any, Any], None] | None = None
    #: ``hook(span, scope, message)`` at ``http.response.start``.
    server_response_hook: Callable[[Any, Any, Any], None] | None = None

    def given(self) -> bool:
        """True when at least one argument was given."""
        return self != InitOptions()


@dataclass(frozen=True)
class SignalSettings:
    """Where and how one signal (traces, metrics, logs) is exported over OTLP."""

    exporters: tuple[str, ...]
    endpoint: str  # for http/protobuf: the full URL including /v1/<signal>
    protocol: Protocol
    headers: Mapping[str, str]
    timeout: float  # seconds
    compression: str
    insecure: bool | None


@dataclass(frozen=True)
class Settings:
    """The effective configuration, as ``Telemetry.settings`` exposes it."""

    service_name: str
    service_version: str | None
    environment: str | None
    resource_attributes: Mapping[str, str]
    traces: SignalSettings
    metrics: SignalSettings
    logs: SignalSettings
    sampler: str
    sampler_arg: float | None
    propagators: tuple[str, ...]
    bsp_schedule_delay: float  # seconds
    bsp_max_queue_size: int
    bsp_max_export_batch_size: int
    bsp_export_timeout: float
    blrp_schedule_delay: float
    blrp_max_queue_size: int
    blrp_max_export_batch_size: int
    blrp_export_timeout: float
    metric_export_interval: float  # seconds
    metric_export_timeout: float
    metrics_temporality: str
    exemplar_filter: str
    prometheus_port: int | None
    prometheus_host: str
    integrations: tuple[str, ...]  # what init() tries to enable, in order
    disabled_integrations: tuple[str, ...]
    log_format: Literal["text", "json"]
    log_level: str
    log_console: Literal["auto", "always", "never"]
    log_export: bool
    log_export_access: bool
    capture_content: bool
    fastapi_impl: Literal["lean", "official", "native"]
    otlp_encoder: Literal["fast", "python", "official"]
    shutdown_timeout: float
    sdk_disabled: bool
    strict: bool
    gpu_interval: float = 1.0  # seconds between GPU samples (PLATFORM_OTEL_GPU_INTERVAL)
    gpu_device: str | None = None  # hw.id or GPU index (PLATFORM_OTEL_GPU_DEVICE)
    #: HTTP server requests not traced: comma-separated regexes searched in the full URL
    #: (OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS), as the official
    #: instrumentation reads them.
    http_excluded_urls: tuple[str, ...] = ()
    #: Header-name regexes captured as ``http.request.header.<name>`` / ``http.response.header.<name>``
    #: (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST / _RESPONSE).
    http_capture_request_headers: tuple[str, ...] = ()
    http_capture_response_headers: tuple[str, ...] = ()
    #: Header-name regexes whose captured values become ``[REDACTED]``
    #: (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS).
    http_sanitize_headers: tuple[str, ...] = ()
    #: ``init(server_request_hook=...)``: called as ``hook(span, scope)`` when a server span starts.
    server_request_hook: Callable[[Any, Any], None] | None = None
    #: ``init(server_response_hook=...)``: ``hook(span, scope, message)`` at ``http.response.start``.
    server_response_hook: Callable[[Any, Any, Any], None] | None = None
    #: Seconds between ``GET /api/ps`` polls of each Ollama server called (0: no polling).
    ollama_ps_interval: float = 15.0
    #: Variables the SDK reads itself whose values are invalid: reported, and hidden from
    #: the SDK (platform_otel._sdk_env), which then uses its default instead of raising.
    invalid_sdk_variables: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view for ``platform-otel doctor`` and logs (header values hidden)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "problems":
                continue
            value = getattr(self, f.name)
            if isinstance(value, SignalSettings):
                value = {
                    "exporters": list(value.exporters),
                    "endpoint": value.endpoint,
                    "protocol": value.protocol,
                    "headers": dict.fromkeys(value.headers, "***"),
                    "timeout": value.timeout,
                    "compression": value.compression,
                    "insecure": value.insecure,
                }
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif callable(value):
                value = getattr(value, "__qualname__", repr(value))
            out[f.name] = value
        return out


class _Reader:
    """Reads settings from arguments and environment, collecting problems."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []

    def raw(self, *names: str) -> tuple[str, str] | None:
        """First non-empty variable among ``names``: (name, value)."""
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                return name, value.strip()
        return None

    def problem(self, variable: str, value: object, used: object, reason: str = "") -> None:
        # A generic variable is read once per signal: report it once.
        if not any(p.variable == variable and p.value == value for p in self.problems):
            self.problems.append(Problem(variable, value, used, reason))

    def choice(
        self,
        arg: Any,
        arg_name: str,
        names: tuple[str, ...],
        allowed: tuple[str, ...],
        default: str,
    ) -> str:
        if arg is not None:
            value = str(arg).strip().lower()
            if value in allowed:
                return value
            self.problem(arg_name, arg, default, f"expected one of {', '.join(allowed)}")
            return default
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        if value.lower() in allowed:
            return value.lower()
        self.problem(name, value, default, f"expected one of {', '.join(allowed)}")
        return default

    def number(
        self,
        arg: Any,
        arg_name: str,
        names: tuple[str, ...],
        default: float,
        *,
        lo: float | None = None,
        hi: float | None = None,
        integer: bool = False,
    ) -> float:
        source: tuple[str, object] | None = (arg_name, arg) if arg is not None else self.raw(*names)
        if source is None:
            return default
        name, value = source
        try:
            number = float(value)  # type: ignore[arg-type]
            if integer and number != int(number):
                raise ValueError
        except (TypeError, ValueError):
            self.problem(name, value, default, "not a number" if not integer else "not an integer")
            return default
        if number != number or (lo is not None and number < lo) or (hi is not None and number > hi):
            bounds = f"must be between {lo} and {hi}" if hi is not None else f"must be >= {lo}"
            self.problem(name, value, default, bounds)
            return default
        return int(number) if integer else number

    def boolean(self, arg: Any, arg_name: str, names: tuple[str, ...], default: bool) -> bool:
        if arg is not None:
            return bool(arg)
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        self.problem(name, value, default, "expected true or false")
        return default

    def csv(self, arg: Any, names: tuple[str, ...]) -> tuple[str, ...] | None:
        if arg is not None:
            if isinstance(arg, str):
                arg = arg.split(",")
            return tuple(str(a).strip().lower() for a in arg if str(a).strip())
        found = self.raw(*names)
        if found is None:
            return None
        return tuple(p.strip().lower() for p in found[1].split(",") if p.strip())

    def key_values(self, arg: Any, arg_name: str, names: tuple[str, ...]) -> dict[str, str]:
        """Parse ``k=v,k2=v2`` (URL-decoded, as the OTel spec says); skip malformed pairs."""
        if isinstance(arg, Mapping):
            return {str(k): str(v) for k, v in arg.items()}
        source: tuple[str, Any] | None = (arg_name, arg) if arg is not None else self.raw(*names)
        if source is None:
            return {}
        name, text = source
        out: dict[str, str] = {}
        bad: list[str] = []
        for pair in str(text).split(","):
            if not pair.strip():
                continue
            key, sep, value = pair.partition("=")
            key = urllib.parse.unquote(key.strip())
            if not sep or not key:
                bad.append(pair.strip())
                continue
            out[key] = urllib.parse.unquote(value.strip())
        if bad:
            self.problem(name, text, out, f"malformed entries {bad} skipped (expected key=value)")
        return out


def _default_service_name(env: Mapping[str, str]) -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    base = os.path.basename(argv0)
    if base in ("", "-c", "-m", "__main__.py"):
        return "unknown_service:python"
    stem = base.rsplit(".", 1)[0] if base.endswith(".py") else base
    return stem or "unknown_service:python"


def _check_endpoint(reader: _Reader, name: str, value: str, default: str) -> str:
    """An endpoint needs a scheme and a host; ``localhost:4317`` is repaired with a warning."""
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return value.rstrip("/") if parsed.path in ("", "/") else value
    candidate = "http://" + value.split("://", 1)[-1]
    if urllib.parse.urlparse(candidate).netloc:
        reader.problem(name, value, candidate, "missing http:// or https:// scheme")
        return candidate
    reader.problem(name, value, default, "not a URL")
    return default


def _signal(
    reader: _Reader,
    signal: str,
    *,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | str | None,
    exporters_arg: tuple[str, ...] | None,
) -> SignalSettings:
    up = signal.upper()
    proto = reader.choice(
        protocol,
        "protocol",
        (f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        _PROTOCOLS,
        "grpc",
    )
    default_base = "http://localhost:4317" if proto == "grpc" else "http://localhost:4318"

    # Endpoint: the per-signal variable is used as-is; the generic one gets /v1/<signal> for HTTP.
    url: str
    if endpoint is not None:
        url = _check_endpoint(reader, "endpoint", endpoint, default_base)
        per_signal = False
    elif found := reader.raw(f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT"):
        url = _check_endpoint(reader, found[0], found[1], default_base)
        per_signal = True
    elif found := reader.raw("OTEL_EXPORTER_OTLP_ENDPOINT"):
        url = _check_endpoint(reader, found[0], found[1], default_base)
        per_signal = False
    else:
        url, per_signal = default_base, False
    if proto == "http/protobuf" and not per_signal:
        url = url.rstrip("/") + f"/v1/{signal}"

    hdrs = reader.key_values(headers, "headers", ())
    if headers is None:
        hdrs = reader.key_values(None, "", ("OTEL_EXPORTER_OTLP_HEADERS",))
        hdrs.update(reader.key_values(None, "", (f"OTEL_EXPORTER_OTLP_{up}_HEADERS",)))

    timeout_ms = reader.number(
        None,
        "",
        (f"OTEL_EXPORTER_OTLP_{up}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
        10_000,
        lo=1,
    )
    # The Python SDK historically read this in seconds; values below 100 are taken as seconds.
    timeout = timeout_ms if timeout_ms < 100 else timeout_ms / 1000.0
    compression = reader.choice(
        None,
        "",
        (f"OTEL_EXPORTER_OTLP_{up}_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
        _COMPRESSIONS,
        "none",
    )
    insecure_raw = reader.raw(f"OTEL_EXPORTER_OTLP_{up}_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
    insecure: bool | None = None
    if insecure_raw is not None:
        lowered = insecure_raw[1].lower()
        if lowered in _TRUE or lowered in _FALSE:
            insecure = lowered in _TRUE
        else:  # None: decided by the endpoint's scheme (http:// is insecure)
            reader.problem(
                insecure_raw[0],
                insecure_raw[1],
                "insecure for http://, TLS for https://",
                "expected true or false",
            )

    allowed = _EXPORTERS[signal]
    chosen = (
        exporters_arg if exporters_arg is not None else reader.csv(None, (f"OTEL_{up}_EXPORTER",))
    )
    exporters: list[str] = []
    for name in chosen if chosen is not None else ("otlp",):
        if name in allowed:
            exporters.append(name)
        else:
            reader.problem(
                f"OTEL_{up}_EXPORTER", name, "otlp", f"expected one of {', '.join(allowed)}"
            )
            exporters.append("otlp")
    if "none" in exporters:
        exporters = []
    return SignalSettings(
        exporters=tuple(dict.fromkeys(exporters)),
        endpoint=url,
        protocol=proto,  # type: ignore[arg-type]
        headers=hdrs,
        timeout=timeout,
        compression=compression,
        insecure=insecure,
    )


def _bad_limits(env: Mapping[str, str]) -> list[Problem]:
    """Limit variables whose value the SDK would reject (it raises instead of warning)."""
    return [
        Problem(name, env[name].strip(), "the SDK default", "must be a non-negative integer")
        for name in _LIMIT_VARIABLES
        if env.get(name, "").strip() and not env[name].strip().isdigit()
    ]


# SpanLimits parameter -> (its variable, the variable it falls back to, the SDK default).
_SPAN_LIMITS: dict[str, tuple[str, str | None, int | None]] = {
    "max_attributes": ("OTEL_ATTRIBUTE_COUNT_LIMIT", None, None),
    "max_attribute_length": ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", None, None),
    "max_events": ("OTEL_SPAN_EVENT_COUNT_LIMIT", None, 128),
    "max_links": ("OTEL_SPAN_LINK_COUNT_LIMIT", None, 128),
    "max_span_attributes": ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", 128),
    "max_event_attributes": ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", 128),
    "max_link_attributes": ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", 128),
    "max_span_attribute_length": (
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        None,
    ),
}


def span_limit_overrides(env: Mapping[str, str] | None = None) -> dict[str, int | None]:
    """``SpanLimits`` arguments for the limit variables the SDK would raise on.

    Each rejected variable's parameter gets what the SDK uses when that variable is
    unset (its fallback variable, else its default; None: no limit); the others are
    left to the SDK. Needed when ``opentelemetry.sdk.trace`` was imported before
    ``init()`` (``platform_otel._sdk_env`` could not hide the values from it).
    """
    env = os.environ if env is None else env
    bad = {p.variable for p in _bad_limits(env)}

    def valid(name: str | None) -> int | None:
        value = env.get(name, "").strip() if name else ""
        return int(value) if value.isdigit() and name not in bad else None

    out: dict[str, int | None] = {}
    for param, (variable, fallback, default) in _SPAN_LIMITS.items():
        if variable in bad:
            value = valid(fallback)
            out[param] = value if value is not None else default
    return out


def _regex_list(r: _Reader, names: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of regular expressions; an invalid one is reported and left out."""
    import re

    found = r.raw(*names)
    if found is None:
        return ()
    name, text = found
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            re.compile(item)
        except re.error as exc:
            r.problem(name, item, "(left out)", f"not a regular expression: {exc}")
            continue
        out.append(item)
    return tuple(out)


def _hook(r: _Reader, value: Any, arg_name: str) -> Any:
    """A request/response hook argument: a callable, or None (anything else is reported)."""
    if value is None or callable(value):
        return value
    r.problem(arg_name, value, None, "not callable")
    return None


def sdk_environment(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """What OpenTelemetry's own modules must see instead of ``env`` (``platform_otel._sdk_env``).

    ``None`` hides a variable: limit variables with a value the SDK would raise on
    (reported by :func:`load_settings`, the SDK default applies). ``OTEL_PROPAGATORS``
    keeps only the entries that can be loaded (``opentelemetry.propagate`` raises at
    import on the others; they are reported at ``init()``). ``OTEL_SEMCONV_STABILITY_OPT_IN``
    is ``http,database`` when unset, so the contrib instrumentations emit the stable
    names (docs/telemetry.md).
    """
    env = os.environ if env is None else env
    out: dict[str, str | None] = {p.variable: None for p in _bad_limits(env)}
    configured = env.get("OTEL_PROPAGATORS", "").strip()
    if configured:
        names = [n.strip().lower() for n in configured.split(",") if n.strip()]
        usable = [n for n in names if n in ("tracecontext", "baggage", "none") or _loadable(n)]
        if usable != names:
            out["OTEL_PROPAGATORS"] = ",".join(usable) or "none"
    if not env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").strip():
        out["OTEL_SEMCONV_STABILITY_OPT_IN"] = SEMCONV_OPT_IN
    return out


def _loadable(propagator: str) -> bool:
    from importlib.metadata import entry_points

    return propagator in _PROPAGATORS and any(
        ep.name == propagator for ep in entry_points(group="opentelemetry_propagator")
    )


def load_settings(
    env: Mapping[str, str] | None = None, options: InitOptions | None = None
) -> Settings:
    """Build the effective :class:`Settings` from ``init()``'s arguments and ``env``.

    Never raises for bad values unless strict mode is on; see the module docstring.
    """
    env = os.environ if env is None else env
    o = InitOptions() if options is None else options
    r = _Reader(env)
    strict = r.boolean(o.strict, "strict", ("PLATFORM_OTEL_STRICT",), False)

    resource_attrs = r.key_values(None, "", ("OTEL_RESOURCE_ATTRIBUTES",))
    resource_attrs.update(r.key_values(o.resource_attributes, "resource_attributes", ()))
    service_name = (
        o.service_name
        or (r.raw("OTEL_SERVICE_NAME") or ("", ""))[1]
        or resource_attrs.get("service.name")
        or _default_service_name(env)
    )
    service_version = (
        o.service_version
        or (r.raw("PLATFORM_OTEL_SERVICE_VERSION") or ("", ""))[1]
        or resource_attrs.get("service.version")
        or None
    )
    environment = (
        o.environment
        or (r.raw("PLATFORM_OTEL_ENVIRONMENT") or ("", ""))[1]
        or resource_attrs.get("deployment.environment.name")
        or resource_attrs.get("deployment.environment")
        or None
    )

    exporters_arg = o.exporters  # {"traces": [...]} for tests and embedding
    signals = {
        s: _signal(
            r,
            s,
            endpoint=o.endpoint,
            protocol=o.protocol,
            headers=o.headers,
            exporters_arg=tuple(exporters_arg[s]) if exporters_arg and s in exporters_arg else None,
        )
        for s in _SIGNALS
    }

    # Sampling: sample_ratio=x is shorthand for parentbased_traceidratio with arg x.
    sample_ratio = o.sample_ratio
    if sample_ratio is not None:
        sampler = "parentbased_traceidratio"
        sampler_arg: float | None = r.number(sample_ratio, "sample_ratio", (), 1.0, lo=0.0, hi=1.0)
    else:
        sampler = r.choice(None, "", ("OTEL_TRACES_SAMPLER",), _SAMPLERS, "parentbased_always_on")
        sampler_arg = None
        # Validated even when the sampler takes no argument: a bad value is a mistake either way.
        arg = r.number(None, "", ("OTEL_TRACES_SAMPLER_ARG",), 1.0, lo=0.0, hi=1.0)
        if sampler.endswith("traceidratio"):
            sampler_arg = arg

    propagators: list[str] = []
    for p in r.csv(None, ("OTEL_PROPAGATORS",)) or ("tracecontext", "baggage"):
        if p in _PROPAGATORS:
            propagators.append(p)
        else:
            r.problem(
                "OTEL_PROPAGATORS",
                p,
                "skipped",
                f"unknown propagator; known: {', '.join(_PROPAGATORS)}",
            )

    def ms(name: str, default_ms: float) -> float:
        return r.number(None, "", (name,), default_ms, lo=0) / 1000.0

    def count(name: str, default: int) -> int:
        return int(r.number(None, "", (name,), default, lo=1, integer=True))

    bsp_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    bsp_batch = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
    if bsp_batch > bsp_queue:
        r.problem(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            bsp_batch,
            bsp_queue,
            "larger than OTEL_BSP_MAX_QUEUE_SIZE",
        )
        bsp_batch = bsp_queue
    blrp_queue = count("OTEL_BLRP_MAX_QUEUE_SIZE", 2048)
    blrp_batch = count("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", 512)
    if blrp_batch > blrp_queue:
        r.problem(
            "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
            blrp_batch,
            blrp_queue,
            "larger than OTEL_BLRP_MAX_QUEUE_SIZE",
        )
        blrp_batch = blrp_queue

    prom_port: int | None = None
    prom_arg = o.prometheus_port
    if prom_arg is not None or r.raw("PLATFORM_OTEL_PROMETHEUS_PORT"):
        port = r.number(
            prom_arg,
            "prometheus_port",
            ("PLATFORM_OTEL_PROMETHEUS_PORT",),
            -1,
            lo=0,
            hi=65535,
            integer=True,
        )
        prom_port = int(port) if port >= 0 else None

    prom_host = (
        r.raw("PLATFORM_OTEL_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_HOST") or ("", "0.0.0.0")
    )[1]
    if prom_port is None and "prometheus" in signals["metrics"].exporters:
        # OTEL_METRICS_EXPORTER=prometheus: the spec's variables, default port 9464.
        prom_port = int(
            r.number(
                None, "", ("OTEL_EXPORTER_PROMETHEUS_PORT",), 9464, lo=0, hi=65535, integer=True
            )
        )

    # Integrations: explicit list (instrument=) or all known; minus disable= and the OTel variable.
    wanted = r.csv(o.instrument, ("PLATFORM_OTEL_INSTRUMENT",))
    integrations = list(wanted) if wanted is not None else list(DEFAULT_INTEGRATIONS)
    for name in list(integrations):
        if name not in DEFAULT_INTEGRATIONS:
            r.problem(
                "instrument",
                name,
                "skipped",
                f"unknown integration; known: {', '.join(DEFAULT_INTEGRATIONS)}",
            )
            integrations.remove(name)
    disabled = set(r.csv(o.disable, ("PLATFORM_OTEL_DISABLE",)) or ())
    disabled |= set(r.csv(None, ("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",)) or ())

    log_format = r.choice(
        o.log_format, "log_format", ("PLATFORM_OTEL_LOG_FORMAT",), _LOG_FORMATS, "text"
    )
    log_level = r.choice(
        o.log_level,
        "log_level",
        ("PLATFORM_OTEL_LOG_LEVEL",),
        ("debug", "info", "warning", "error", "critical"),
        "info",
    ).upper()

    sdk_disabled = r.boolean(None, "", ("OTEL_SDK_DISABLED",), False)
    bad_limits = _bad_limits(env)
    for problem in bad_limits:
        r.problem(problem.variable, problem.value, problem.used, problem.reason)
    invalid_sdk_variables = [p.variable for p in bad_limits]

    # Read before Settings is built, so that its problems are complete when it is.
    bsp_schedule_delay = ms("OTEL_BSP_SCHEDULE_DELAY", 5000)
    bsp_export_timeout = ms("OTEL_BSP_EXPORT_TIMEOUT", 30000)
    blrp_schedule_delay = ms("OTEL_BLRP_SCHEDULE_DELAY", 1000)
    blrp_export_timeout = ms("OTEL_BLRP_EXPORT_TIMEOUT", 30000)
    metric_export_interval = max(ms("OTEL_METRIC_EXPORT_INTERVAL", 60000), 0.05)
    metric_export_timeout = ms("OTEL_METRIC_EXPORT_TIMEOUT", 30000)
    metrics_temporality = r.choice(
        None,
        "",
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",),
        _TEMPORALITIES,
        "cumulative",
    )
    exemplar_filter = r.choice(
        None, "", ("OTEL_METRICS_EXEMPLAR_FILTER",), _EXEMPLAR_FILTERS, "trace_based"
    )
    log_console = r.choice(
        o.log_console,
        "log_console",
        ("PLATFORM_OTEL_LOG_CONSOLE",),
        ("auto", "always", "never"),
        "auto",
    )
    log_export = r.boolean(o.log_export, "log_export", ("PLATFORM_OTEL_LOG_EXPORT",), True)
    log_export_access = r.boolean(
        o.log_export_access,
        "log_export_access",
        ("PLATFORM_OTEL_LOG_EXPORT_ACCESS",),
        False,
    )
    capture_content = r.boolean(
        o.capture_content,
        "capture_content",
        ("PLATFORM_OTEL_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        False,
    )
    fastapi_impl = r.choice(
        o.fastapi_impl,
        "fastapi_impl",
        ("PLATFORM_OTEL_FASTAPI_IMPL",),
        _FASTAPI_IMPLS,
        "lean",
    )
    otlp_encoder = r.choice(
        None, "", ("PLATFORM_OTEL_OTLP_ENCODER",), ("fast", "python", "official"), "fast"
    )
    shutdown_timeout = r.number(
        o.shutdown_timeout,
        "shutdown_timeout",
        ("PLATFORM_OTEL_SHUTDOWN_TIMEOUT",),
        5.0,
        lo=0.0,
    )

    return Settings(
        service_name=str(service_name),
        service_version=str(service_version) if service_version else None,
        environment=str(environment) if environment else None,
        resource_attributes=resource_attrs,
        traces=signals["traces"],
        metrics=signals["metrics"],
        logs=signals["logs"],
        sampler=sampler,
        sampler_arg=sampler_arg,
        propagators=tuple(propagators),
        bsp_schedule_delay=bsp_schedule_delay,
        bsp_max_queue_size=bsp_queue,
        bsp_max_export_batch_size=bsp_batch,
        bsp_export_timeout=bsp_export_timeout,
        blrp_schedule_delay=blrp_schedule_delay,
        blrp_max_queue_size=blrp_queue,
        blrp_max_export_batch_size=blrp_batch,
        blrp_export_timeout=blrp_export_timeout,
        metric_export_interval=metric_export_interval,
        metric_export_timeout=metric_export_timeout,
        metrics_temporality=metrics_temporality,
        exemplar_filter=exemplar_filter,
        prometheus_port=prom_port,
        prometheus_host=prom_host,
        integrations=tuple(i for i in integrations if i not in disabled),
        disabled_integrations=tuple(sorted(disabled)),
        log_format=log_format,  # type: ignore[arg-type]
        log_level=log_level,
        log_console=log_console,  # type: ignore[arg-type]
        log_export=log_export,
        log_export_access=log_export_access,
        capture_content=capture_content,
        fastapi_impl=fastapi_impl,  # type: ignore[arg-type]
        otlp_encoder=otlp_encoder,  # type: ignore[arg-type]
        shutdown_timeout=shutdown_timeout,
        sdk_disabled=sdk_disabled,
        strict=strict,
        gpu_interval=r.number(
            o.gpu_interval,
            "gpu_interval",
            ("PLATFORM_OTEL_GPU_INTERVAL",),
            1.0,
            lo=0.05,
            hi=3600.0,
        ),
        gpu_device=(r.raw("PLATFORM_OTEL_GPU_DEVICE") or (None, None))[1],
        http_excluded_urls=_regex_list(
            r, ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
        ),
        http_capture_request_headers=_regex_list(
            r, ("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",)
        ),
        http_capture_response_headers=_regex_list(
            r, ("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",)
        ),
        http_sanitize_headers=_regex_list(
            r, ("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",)
        ),
        server_request_hook=_hook(r, o.server_request_hook, "server_request_hook"),
        server_response_hook=_hook(r, o.server_response_hook, "server_response_hook"),
        ollama_ps_interval=r.number(None, "", ("PLATFORM_OTEL_OLLAMA_PS_INTERVAL",), 15.0, lo=0.0),
        invalid_sdk_variables=tuple(invalid_sdk_variables),
        problems=tuple(r.problems),
    )
