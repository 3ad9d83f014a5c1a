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
    # httpx logs every request URL at INFO, and an APNs URL ends in the device token; h2 and
    # hpack log headers (the provider token) at DEBUG. Neither belongs in a log.
    for name in ("httpx", "httpcore", "h2", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
