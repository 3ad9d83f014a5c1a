"""Process-wide logging setup, done once by each entry point."""

from __future__ import annotations

import logging

from app.settings import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO; webhook URLs often carry the receiver's own
    # token in their path or query. Providers log what is safe themselves.
    logging.getLogger("httpx").setLevel(logging.WARNING)
