"""The logging setups Python services use most, in one process, for tests/integration/test_log_setups.py.

Usage: ``python log_setups_app.py MODE OUT_DIR`` with MODE ``before`` (handlers and
sinks configured before ``init()``), ``after`` (configured after it) or ``json``
(before, with ``PLATFORM_OTEL_LOG_FORMAT=json`` set by the test). Each setup writes
to its own file ``OUT_DIR/<setup>.log`` the way its library is configured by
applications; every setup logs ``<setup>:inside`` inside a span and
``<setup>:outside`` after it, with the key-value pair ``user``. The root logger
has no handler, so ``init()`` adds its console handler (stderr), which the
``console`` setup writes to. The span's ids are printed as one JSON line.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import queue
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODE, OUT = sys.argv[1], Path(sys.argv[2])
Log = Callable[[str, int], None]
files: list[Any] = []
listeners: list[Any] = []


def stream(name: str) -> Any:
    fh = open(OUT / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed at exit
    files.append(fh)
    return fh


def stdlib_logger(
    name: str, formatter: logging.Formatter | None, logger_name: str = ""
) -> logging.Logger:
    handler = logging.StreamHandler(stream(name))
    if formatter is not None:
        handler.setFormatter(formatter)
    logger = logging.getLogger(logger_name or f"matrix.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class HandWrittenJson(logging.Formatter):
    """What applications write when they want JSON and no library."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "user": getattr(record, "user", None),
            }
        )


def setups() -> dict[str, Log]:
    import structlog
    import uvicorn.logging
    from gunicorn import glogging
    from gunicorn.config import Config
    from loguru import logger as loguru_logger
    from pythonjsonlogger import json as pjl

    from platform_otel.logs import instrument_loguru, structlog_processor

    out: dict[str, Log] = {}

    def with_extra(logger: logging.Logger) -> Log:
        return lambda msg, user: logger.info("%s", msg, extra={"user": user})

    out["plain"] = with_extra(
        stdlib_logger("plain", logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    )
    out["message_only"] = with_extra(stdlib_logger("message_only", None))
    out["hand_json"] = with_extra(stdlib_logger("hand_json", HandWrittenJson()))
    # QueueHandler -> QueueListener (formatting on the listener's thread) -> JSON formatter.
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    target = logging.StreamHandler(stream("queue_json"))
    target.setFormatter(HandWrittenJson())
    listener = logging.handlers.QueueListener(records, target)
    listener.start()
    listeners.append(listener)
    queued = logging.getLogger("matrix.queue_json")
    queued.handlers[:] = [logging.handlers.QueueHandler(records)]
    queued.setLevel(logging.INFO)
    queued.propagate = False
    out["queue_json"] = with_extra(queued)
    out["python_json_logger"] = with_extra(
        stdlib_logger("python_json_logger", pjl.JsonFormatter("%(levelname)s %(name)s %(message)s"))
    )

    pre_chain = [structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt="iso")]

    def structlog_stdlib(name: str, renderer: Any, ours: bool = False) -> Log:
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=pre_chain,
        )
        chain = [*pre_chain, *([structlog_processor] if ours else [])]
        log = structlog.wrap_logger(
            stdlib_logger(name, formatter),
            processors=[*chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        return lambda msg, user: log.info(msg, user=user)

    out["structlog_json"] = structlog_stdlib("structlog_json", structlog.processors.JSONRenderer())
    out["structlog_console"] = structlog_stdlib(
        "structlog_console", structlog.dev.ConsoleRenderer(colors=False)
    )
    out["structlog_json_processor"] = structlog_stdlib(
        "structlog_json_processor", structlog.processors.JSONRenderer(), ours=True
    )
    kwargs_logger = structlog.wrap_logger(
        stdlib_logger("structlog_kwargs", pjl.JsonFormatter("%(levelname)s %(name)s %(message)s")),
        processors=[structlog_processor, structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    out["structlog_kwargs"] = lambda msg, user: kwargs_logger.info(msg, user=user)
    native = structlog.wrap_logger(
        structlog.PrintLogger(stream("structlog_native")),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog_processor,
            structlog.processors.JSONRenderer(),
        ],
    )
    out["structlog_native"] = lambda msg, user: native.info(msg, user=user)

    loguru_logger.remove()
    loguru_logger.add(stream("loguru"), serialize=True, level="INFO")
    instrument_loguru(loguru_logger)
    out["loguru"] = lambda msg, user: loguru_logger.bind(user=user).info(msg)
    loguru_logger.add(
        stream("loguru_text"),
        format="{time} | {level} | {message} | user={extra[user]} trace_id={extra[trace_id]} "
        "span_id={extra[span_id]}",
        level="INFO",
        filter=lambda record: record["message"].startswith("loguru_text"),
    )
    out["loguru_text"] = lambda msg, user: loguru_logger.bind(user=user).info(msg)

    class InterceptHandler(logging.Handler):
        """loguru's documented bridge: stdlib records written through loguru."""

        def emit(self, record: logging.LogRecord) -> None:
            loguru_logger.opt(depth=6, exception=record.exc_info).bind(**{"user": record.user}).log(  # type: ignore[attr-defined]
                record.levelname, record.getMessage()
            )

    intercepted = logging.getLogger("matrix.loguru_intercept")
    intercepted.handlers[:] = [InterceptHandler()]
    intercepted.setLevel(logging.INFO)
    intercepted.propagate = False
    out["loguru_intercept"] = with_extra(intercepted)

    out["uvicorn_default"] = with_extra(
        stdlib_logger(
            "uvicorn_default",
            uvicorn.logging.DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False),
            "uvicorn.error",
        )
    )
    access = stdlib_logger(
        "uvicorn_access",
        uvicorn.logging.AccessFormatter(
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
        ),
        "uvicorn.access",
    )
    out["uvicorn_access"] = lambda msg, user: access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", f"/{msg}", "1.1", 200
    )

    cfg = Config()
    cfg.set("errorlog", str(OUT / "gunicorn_error.log"))
    cfg.set("accesslog", str(OUT / "gunicorn_access.log"))
    glog = glogging.Logger(cfg)

    def gunicorn_access(msg: str, access_format: str | None) -> None:
        if access_format is not None:
            cfg.set("access_log_format", access_format)
        resp = types.SimpleNamespace(status="200 OK", sent=2, headers=[])
        environ = {
            "REQUEST_METHOD": "GET",
            "RAW_URI": f"/{msg}",
            "PATH_INFO": f"/{msg}",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
        }
        glog.access(
            resp, types.SimpleNamespace(headers=[]), environ, datetime.timedelta(0, 0, 1500)
        )

    default_access = cfg.access_log_format
    out["gunicorn_error"] = lambda msg, user: glog.info(msg, extra={"user": user})
    out["gunicorn_access"] = lambda msg, user: gunicorn_access(msg, default_access)
    out["gunicorn_access_json"] = lambda msg, user: gunicorn_access(
        msg, '{"remote": "%(h)s", "request": "%(r)s", "status": %(s)s, "duration_us": %(D)s}'
    )
    return out


def main() -> None:
    console = logging.getLogger("matrix.console")  # propagates to root: init()'s handler
    console.setLevel(logging.INFO)
    configured = setups() if MODE in ("before", "json") else {}
    import platform_otel

    platform_otel.init(service_name="log-matrix")
    if MODE == "after":
        configured = setups()
    configured["console"] = lambda msg, user: console.info("%s", msg, extra={"user": user})
    from opentelemetry import trace

    tracer = trace.get_tracer("matrix")
    with tracer.start_as_current_span("request"), tracer.start_as_current_span("handler") as span:
        ctx = span.get_span_context()
        for name, log in configured.items():
            log(f"{name}:inside", 42)
    for name, log in configured.items():
        log(f"{name}:outside", 7)
    platform_otel.shutdown()
    from loguru import logger as loguru_logger

    loguru_logger.remove()
    for listener in listeners:
        listener.stop()
    for fh in files:
        fh.close()
    print(json.dumps({"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}))


if __name__ == "__main__":
    main()
