"""structlog set-up: human-readable on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import os
import sys

import structlog


class _CurrentStderr:
    """Whatever sys.stderr is at write time (pytest and daemons swap it after configuration)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    level_name = (level or os.environ.get("TESSERA_LOG_LEVEL", "info")).upper()
    numeric = getattr(logging, level_name, None)
    if not isinstance(numeric, int):
        raise SystemExit(f"error: log level {level_name!r} is unknown; use debug, info, warning or error")
    if json is None:
        env = os.environ.get("TESSERA_LOG_FORMAT")
        json = env == "json" if env else not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **bound: object) -> structlog.stdlib.BoundLogger:
    # Lazy: a module-level logger must honour a configure_logging() that runs later.
    return structlog.get_logger(name, **bound)
