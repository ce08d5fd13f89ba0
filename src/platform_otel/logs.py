"""Log correlation for logging libraries that do not go through ``logging``.

The standard library's records are correlated and exported by ``init()`` with
no code (docs/logging.md). structlog used natively and loguru need one line
each, which these names provide::

    import structlog
    from platform_otel.logs import structlog_processor

    structlog.configure(processors=[..., structlog_processor, structlog.processors.JSONRenderer()])

    from loguru import logger
    from platform_otel.logs import instrument_loguru

    instrument_loguru(logger)

Importing this module imports neither structlog nor loguru.
"""

from __future__ import annotations

from .instrumentation.loguru import install as instrument_loguru
from .instrumentation.loguru import patcher as loguru_patcher
from .instrumentation.loguru import sink as loguru_sink
from .instrumentation.structlog import processor as structlog_processor

__all__ = ["instrument_loguru", "loguru_patcher", "loguru_sink", "structlog_processor"]
