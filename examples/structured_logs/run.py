"""Structured log lines with the trace id: stdlib JSON logging, structlog and loguru.

    python examples/structured_logs/run.py

Inside one span, the same event is logged three ways. Every line printed carries the
span's ``trace_id`` and ``span_id`` in its own syntax (JSON fields, or ``key=value``),
and every record is exported once over OTLP with the same ids, so a log backend links
each line to its trace. Telemetry goes to the usual OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, default ``localhost:4317``); nothing needs to listen
there for this to run.
"""

from __future__ import annotations

import json
import logging
import os
import sys

# 1. stdlib logging with a JSON formatter, configured before init() as an application
#    usually does: init() keeps the handler and adds the ids to its lines.


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the kind of formatter a service already has."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "order": getattr(record, "app.order_id", None),
            }
        )


handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonFormatter())
logging.basicConfig(level=logging.INFO, handlers=[handler])

import platform_otel  # noqa: E402

telemetry = platform_otel.init(service_name="structured-logs-example")

from opentelemetry import trace  # noqa: E402

tracer = trace.get_tracer("example.structured_logs")
ORDER = "A-1001"


def stdlib_line() -> None:
    # extra= keys become attributes of the exported record.
    logging.getLogger("example.structured_logs").info("order paid", extra={"app.order_id": ORDER})


def structlog_line() -> None:
    try:
        import structlog
    except ImportError:
        print("(structlog is not installed: pip install 'platform-otel[structlog]')")
        return
    from platform_otel.logs import structlog_processor

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog_processor,  # adds trace_id/span_id and exports the event over OTLP
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
    )
    # "logger" names the exported record's instrumentation scope; other pairs are attributes.
    log = structlog.get_logger().bind(logger="example.structured_logs")
    log.info("order paid", **{"app.order_id": ORDER})


def loguru_line() -> None:
    try:
        from loguru import logger
    except ImportError:
        print("(loguru is not installed: pip install 'platform-otel[loguru]')")
        return
    from platform_otel.logs import instrument_loguru

    logger.remove()  # loguru's default stderr sink prints no extras; print the ids instead
    logger.add(
        sys.stdout,
        format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level} | {message} | "
        "trace_id={extra[trace_id]} span_id={extra[span_id]}",
    )
    instrument_loguru(logger)  # ids into record["extra"]; a sink that exports over OTLP
    logger.bind(**{"app.order_id": ORDER}).info("order paid")


def main() -> int:
    with tracer.start_as_current_span("pay order") as span:
        context = span.get_span_context()
        trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
        print(f"inside span 'pay order': trace_id {trace_id} span_id {span_id}\n")
        print("stdlib logging, JSON formatter:")
        stdlib_line()
        print("\nstructlog, JSONRenderer:")
        structlog_line()
        print("\nloguru:")
        loguru_line()
    telemetry.shutdown()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
    print(f"\neach record was also exported once over OTLP to {endpoint}, with trace_id {trace_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
