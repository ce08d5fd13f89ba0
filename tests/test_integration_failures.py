"""An integration that cannot be imported or enabled never makes ``init()`` raise.

Seen at the declared lowest versions: the FastAPI integration failed at import, and
the error path itself then raised (``platform_otel.instrumentation.logging`` had
shadowed the stdlib ``logging`` in the registry), so ``init()`` crashed the app.
Each case runs in a fresh interpreter with the real registry; only the failing
integration's module is replaced by one that fails the way a version mismatch does.
"""

from __future__ import annotations

import pytest

from tests.support.fixtures import run_python

APP = """
import logging, pathlib, sys, tempfile
import platform_otel.instrumentation as registry

broken_dir = pathlib.Path(tempfile.mkdtemp())
(broken_dir / "broken_integration.py").write_text({module_source!r})
registry.__path__.append(str(broken_dir))
# 'fastapi' now names the broken module; not deferred, so it is imported during init().
registry.REGISTRY["fastapi"] = ("broken_integration", "json", False)

import platform_otel
tel = platform_otel.init(
    service_name="svc",
    instrument=["logging", "fastapi", "requests"],
    exporters={{"traces": ["none"], "metrics": ["none"], "logs": ["none"]}},
    log_console="never",
)
print("INIT_RETURNED", flush=True)
for status in tel.integrations:
    print("STATUS", status.name, status.active, status.reason, flush=True)

# The other integrations still work: requests is instrumented once imported...
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
print("REQUESTS_INSTRUMENTED", RequestsInstrumentor().is_instrumented_by_opentelemetry, flush=True)
# ...and log records carry the active span's trace id (the logging integration).
from opentelemetry import trace
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
logging.getLogger("app").addHandler(Keep())
logging.getLogger("app").setLevel(logging.INFO)
with trace.get_tracer("app").start_as_current_span("work") as span:
    logging.getLogger("app").info("hello")
    want = format(span.get_span_context().trace_id, "032x")
print("LOG_CORRELATED", getattr(records[0], "otelTraceID", None) == want, flush=True)
"""

FAILURES = {
    "import": "raise ImportError(\"cannot import name 'RANDOM_TRACE_ID' from 'TraceFlags'\")\n",
    "attribute": "import opentelemetry.trace\nopentelemetry.trace.TraceFlags.NOT_IN_THIS_VERSION\n",
    "instrument": (
        "LIBRARY = 'json'\n"
        "def instrument(ctx):\n"
        "    raise AttributeError('SDK field moved')\n"
        "def uninstrument():\n"
        "    pass\n"
    ),
}


@pytest.mark.parametrize("how", list(FAILURES))
def test_init_survives_an_integration_that_fails(how: str) -> None:
    """init() returns, one warning names the failed integration, logging and requests still work."""
    result = run_python(APP.format(module_source=FAILURES[how]), timeout=30)
    assert result.rc == 0, str(result)
    assert "INIT_RETURNED" in result.stdout, str(result)
    assert "Traceback" not in result.stderr, str(result)
    warnings = [line for line in result.stderr.splitlines() if "fastapi integration" in line]
    assert len(warnings) == 1, str(result)
    assert "disabled" in warnings[0], str(result)
    assert "STATUS fastapi False failed:" in result.stdout, str(result)
    assert "STATUS logging True active" in result.stdout, str(result)
    assert "STATUS requests True waiting for import of 'requests'" in result.stdout, str(result)
    assert "REQUESTS_INSTRUMENTED True" in result.stdout, str(result)
    assert "LOG_CORRELATED True" in result.stdout, str(result)
