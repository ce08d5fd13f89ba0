"""requests client spans and ``http.client.request.duration``, via the official instrumentor.

Outgoing requests carry ``traceparent`` so the next service continues the trace.
"""

from __future__ import annotations

from ._contrib import ContribIntegration

__all__ = ["LIBRARY", "instrument", "uninstrument"]

LIBRARY = "requests"
_integration = ContribIntegration("opentelemetry.instrumentation.requests", "RequestsInstrumentor")
instrument = _integration.instrument
uninstrument = _integration.uninstrument
