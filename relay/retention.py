"""Retention: old DISPATCHED outbox rows and old audit rows are deleted in bounded batches, one
batch per transaction, on the relay's timer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from app.core.db import transaction
from app.core.settings import Settings
from app.store import audit, outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    outbox_events: int
    audit_rows: int


def purge(engine: Engine, settings: Settings, max_batches: int = 100) -> Purged:
    """Delete what is past retention, at most ``max_batches`` batches of each."""
    outbox_events = _purge(
        engine,
        outbox.purge_dispatched,
        settings.outbox_retention_hours * 3600,
        settings.retention_batch_size,
        max_batches,
    )
    audit_rows = _purge(
        engine,
        audit.purge,
        settings.audit_retention_days * 86400,
        settings.retention_batch_size,
        max_batches,
    )
    if outbox_events or audit_rows:
        log.info("retention deleted %d outbox events and %d audit rows", outbox_events, audit_rows)
    return Purged(outbox_events, audit_rows)


def _purge(
    engine: Engine,
    delete: Callable[[Connection, float, int], int],
    age: float,
    batch_size: int,
    batches: int,
) -> int:
    total = 0
    for _ in range(batches):
        with transaction(engine) as conn:
            deleted = delete(conn, age, batch_size)
        total += deleted
        if deleted < batch_size:
            break
    return total
