"""One logging setup: structlog, JSON in production, readable in a terminal.

The correlation id of the message being handled is bound with ``structlog.contextvars`` for the
whole handling, so every line a handler logs carries it.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import structlog

_SECRET_IN_QUERY = re.compile(
    r"([?&](?:token|ticket|access_token|password|secret|key)=)[^&\s\"']+", re.IGNORECASE
)


def _redact_query_secrets(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A credential in a URL's query (a library logging the request line, such as uvicorn's
    WebSocket line) never reaches the log: its value becomes ``***``."""
    message = event.get("event")
    if isinstance(message, str) and "=" in message:
        event["event"] = _SECRET_IN_QUERY.sub(r"\1***", message)
    return event


def configure_logging(
    service: str, *, log_format: Literal["json", "console", "auto"] = "auto", level: str = "INFO"
) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        _redact_query_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (FastStream, uvicorn, aio-pika) log through stdlib logging: render them alike.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("pymongo").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


def without_password(url: str) -> str:
    """``url`` fit to print: a password in it becomes ``***`` (a mongodb+srv or amqp URL
    may hold one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
