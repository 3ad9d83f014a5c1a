"""Process-wide logging: JSON lines (or text for humans) carrying the ids of the work in hand.

``log_context(request_id=…, notification_id=…, delivery_id=…)`` binds ids for a block; every
record logged inside it carries them, in the API, the relay and the workers alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from pythonjsonlogger.json import JsonFormatter

from app.core.settings import Settings

_context: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    token = bind_log_context(**ids)
    try:
        yield
    finally:
        unbind_log_context(token)


def bind_log_context(**ids: object) -> Token[dict[str, str]]:
    """Bind ``ids`` until ``unbind_log_context(token)``: for a scope that is not one block,
    such as a request between its before- and teardown hooks."""
    return _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def unbind_log_context(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{process}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
        )
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO: webhook URLs often carry the receiver's token
    # and an APNs URL ends in the device token; h2 and hpack log headers (the provider token)
    # at DEBUG. None of that belongs in a log; providers log what is safe themselves.
    for name in ("httpx", "httpcore", "h2", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
