"""Retention: old DISPATCHED outbox rows and old audit rows are deleted in bounded batches.

Bounded so that one run never holds locks or bloats WAL for long; the relay calls it on a timer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, TextClause, text

from app.db import transaction
from app.settings import Settings

log = logging.getLogger(__name__)

_PURGE_OUTBOX = text(
    """
    DELETE FROM outbox_event WHERE id IN (
        SELECT id FROM outbox_event
        WHERE status = 'DISPATCHED' AND dispatched_at < now() - make_interval(secs => :age)
        LIMIT :limit
    )
    """
)

_PURGE_AUDIT = text(
    """
    DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log
        WHERE created_at < now() - make_interval(secs => :age)
        LIMIT :limit
    )
    """
)


@dataclass(frozen=True)
class Purged:
    outbox_events: int
    audit_rows: int


def purge(engine: Engine, settings: Settings, max_batches: int = 100) -> Purged:
    """Delete what is past retention, one batch per transaction, at most ``max_batches`` each."""
    outbox = _purge(
        engine, _PURGE_OUTBOX, settings.outbox_retention_hours * 3600, settings, max_batches
    )
    audit = _purge(
        engine, _PURGE_AUDIT, settings.audit_retention_days * 86400, settings, max_batches
    )
    if outbox or audit:
        log.info("retention deleted %d outbox events and %d audit rows", outbox, audit)
    return Purged(outbox, audit)


def _purge(
    engine: Engine, statement: TextClause, age: float, settings: Settings, batches: int
) -> int:
    total = 0
    for _ in range(batches):
        with transaction(engine) as conn:
            deleted = conn.execute(statement, {"age": age, "limit": settings.retention_batch_size})
        total += deleted.rowcount
        if deleted.rowcount < settings.retention_batch_size:
            break
    return total
