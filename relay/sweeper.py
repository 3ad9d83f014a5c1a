"""The sweeper: deliveries stuck in flight past their lease go back through the outbox.

This is what makes a flushed Redis, a lost ETA retry or a SIGKILLed worker lose nothing: the
database knows every delivery that is not finished, and the sweeper re-drives it. A worker
renews the lease of what it is still sending (``Leases`` in tasks/deliver.py), so a SENDING
delivery past its lease belongs to a worker that is gone, never to a slow one.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from app.core.db import transaction
from app.core.settings import Settings
from app.store import deliveries

log = logging.getLogger(__name__)


def sweep_once(engine: Engine, settings: Settings, limit: int = 1000) -> int:
    with transaction(engine) as conn:
        redriven = deliveries.sweep(
            conn,
            lease_seconds=settings.sweeper_lease_seconds,
            max_attempts=settings.delivery_max_attempts,
            limit=limit,
        )
    if redriven:
        log.warning("sweeper re-drove %d stuck deliveries through the outbox", redriven)
    return redriven
