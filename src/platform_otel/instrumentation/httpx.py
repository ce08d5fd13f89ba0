"""httpx client spans and ``http.client.request.duration``, via the official instrumentor.

Outgoing requests carry ``traceparent`` so the next service continues the trace.
"""

from __future__ import annotations

from ._contrib import ContribIntegration

__all__ = ["LIBRARY", "instrument", "uninstrument"]

LIBRARY = "httpx"
_integration = ContribIntegration("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor")
instrument = _integration.instrument
uninstrument = _integration.uninstrument
