"""``platform_otel.testing.capture()`` after ``init()`` sees what the integrations emit."""

from __future__ import annotations

import pytest

from tests.support.fixtures import otel_env, run_python
from tests.support.otlp_receiver import OtlpReceiver

APP = """
import logging
import platform_otel
platform_otel.init(service_name="captured")
from fastapi import FastAPI
from fastapi.testclient import TestClient
from platform_otel.testing import capture

app = FastAPI()

@app.get("/items/{item_id}")
def item(item_id: int):
    logging.getLogger("app").warning("serving %d", item_id)
    return {"item_id": item_id}

cap = capture()
with TestClient(app) as client:
    client.get("/items/1")
names = [s.name for s in cap.spans()]
points = cap.metric_points("http.server.request.duration")
logs = [r for r in cap.logs() if "serving 1" in str(getattr(r, "log_record", r).body)]
record = getattr(logs[0], "log_record", logs[0]) if logs else None
print("SPANS=" + ",".join(names))
print("POINTS=" + str(sum(p.count for p in points)))
print("LOG_TRACED=" + str(record is not None and record.trace_id == cap.spans()[0].context.trace_id))
cap.close()
with TestClient(app) as client:
    client.get("/items/2")
print("AFTER_CLOSE=" + str(len(cap.spans())))
platform_otel.shutdown()
"""


@pytest.mark.integration
def test_capture_after_init_sees_request_spans_metrics_and_logs(
    otlp_grpc_receiver: OtlpReceiver,
) -> None:
    """A capture made after init() gets the request span, the duration histogram and the correlated log record; the exporters still export."""
    result = run_python(APP, otel_env(otlp_grpc_receiver, service_name="captured"), timeout=60)
    assert result.rc == 0 and "Traceback" not in result.stderr, str(result)
    assert "SPANS=GET /items/{item_id}\n" in result.stdout, str(result)
    from opentelemetry.sdk.metrics import MeterProvider

    if hasattr(MeterProvider, "add_metric_reader"):  # SDK >= 1.4x: a reader can join later
        assert "POINTS=1\n" in result.stdout, str(result)
    assert "LOG_TRACED=True" in result.stdout, str(result)
    assert "AFTER_CLOSE=1" in result.stdout, str(result)
    otlp_grpc_receiver.wait_for(
        lambda r: sum(s.name == "GET /items/{item_id}" for s in r.spans()) == 2, 10
    )
