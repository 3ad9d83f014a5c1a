"""Every SQL statement on ``outbox_event`` but the two that add rows with a delivery's own
change (the accept, app/store/accept.py, and the sweep, app/store/deliveries.py): the claim,
an operator's re-queue, the lag, retention and vacuum.

The claim is also where a delivery moves PENDING → QUEUED: that transition rides on the claim's
statement, so a row is QUEUED exactly when it was handed to a relay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from app.core.domain import Priority

PRIORITY_ORDER = sorted((p.value for p in Priority), key=lambda p: Priority(p).rank)

# FOR UPDATE SKIP LOCKED gives each due row to exactly one relay: a row another relay holds is
# skipped, not waited for. The rows are marked DISPATCHED (and their deliveries QUEUED) in the
# claiming transaction, which the caller commits only after publishing; a relay that dies before
# committing rolls back, and the rows are claimed again. HIGH (rank 0) first, then oldest due.
# The claimed ids are handed on as arrays (= ANY(ARRAY(…))), not as IN (subquery) or a join:
# the planner then probes the primary keys for exactly those rows, where with IN or a join it
# chose to hash the whole table on every batch, which made each claim slower as the backlog grew.
_CLAIM = text(
    """
    WITH claimed AS (
        UPDATE outbox_event
        SET status = 'DISPATCHED', dispatched_at = now(), attempts = attempts + 1
        WHERE id = ANY(ARRAY(
            SELECT id FROM outbox_event
            WHERE status = 'PENDING' AND available_at <= now()
            ORDER BY priority, available_at
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING delivery_id, channel, priority, notification_id, request_id
    ), queued AS (
        UPDATE delivery d SET status = 'QUEUED', updated_at = now()
        WHERE d.id = ANY(ARRAY(SELECT delivery_id FROM claimed)) AND d.status = 'PENDING'
    )
    SELECT CAST(delivery_id AS text), channel, priority, CAST(notification_id AS text), request_id
    FROM claimed
    """
)


@dataclass(frozen=True)
class ClaimedEvent:
    """Ids as text: they go straight into task arguments and logs, so parsing them into UUID
    objects and back was a measurable share of the relay's time."""

    delivery_id: str
    channel: str
    priority: int
    notification_id: str | None  # for the logs; None only for rows written by hand
    request_id: str | None


def claim_due(conn: Connection, limit: int) -> list[ClaimedEvent]:
    return [ClaimedEvent(*row) for row in conn.execute(_CLAIM, {"limit": limit})]


_LAG = text(
    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(available_at)), 0) FROM outbox_event"
    " WHERE status = 'PENDING' AND available_at <= now()"
)


# An operator's "retry now" (app/api/console): a FAILED or RETRYING delivery of the project goes
# back to RETRYING with a fresh outbox row, in one statement, so the relay publishes it at once.
# Guarded by its status, so a delivery sent or cancelled meanwhile is left alone; the audit
# trigger records the change with the operator's reason as its error.
_REQUEUE = text(
    """
    WITH retried AS (
        UPDATE delivery d
        SET status = 'RETRYING', error_code = 'operator_retry', last_error = :reason,
            next_attempt_at = now(), updated_at = now()
        FROM notification n
        WHERE d.id = :delivery_id AND n.id = d.notification_id AND n.project_id = :project_id
          AND d.status IN ('FAILED', 'RETRYING')
        RETURNING d.id, d.channel, d.notification_id, n.priority, n.request_id
    )
    INSERT INTO outbox_event (delivery_id, channel, priority, notification_id, request_id)
    SELECT id, channel, array_position(CAST(:priority_order AS text[]), priority) - 1,
           notification_id, request_id
    FROM retried
    RETURNING notification_id
    """
)


def requeue(
    conn: Connection, project_id: str, delivery_id: uuid.UUID, reason: str
) -> uuid.UUID | None:
    """Re-queue a FAILED or RETRYING delivery now; its notification's id, or None if the
    project has no such delivery in either status."""
    found = conn.execute(
        _REQUEUE,
        {
            "delivery_id": str(delivery_id),
            "project_id": project_id,
            "reason": reason,
            "priority_order": PRIORITY_ORDER,
        },
    ).first()
    return None if found is None else uuid.UUID(str(found.notification_id))


def lag_seconds(conn: Connection) -> float:
    """Age of the oldest due PENDING row (0 if none)."""
    return float(conn.scalar(_LAG) or 0)


# Bounded, so that one run never holds locks or bloats WAL for long.
_PURGE_DISPATCHED = text(
    """
    DELETE FROM outbox_event WHERE id IN (
        SELECT id FROM outbox_event
        WHERE status = 'DISPATCHED' AND dispatched_at < now() - make_interval(secs => :age)
        LIMIT :limit
    )
    """
)


def purge_dispatched(conn: Connection, older_than_seconds: float, limit: int) -> int:
    """Delete up to ``limit`` DISPATCHED rows older than the age; returns how many."""
    return conn.execute(_PURGE_DISPATCHED, {"age": older_than_seconds, "limit": limit}).rowcount


# Every dispatched row leaves a dead entry in the claim's partial index, and the claim's index
# scan starts at the oldest entries, so until a VACUUM removes the dead ones each claim walks
# past all of them, and the claim's share of accept-to-provider latency grows by the minute.
# Autovacuum comes too seldom for a queue table and may be off. VACUUM reads only the pages
# changed since the last one. SKIP_LOCKED: another relay's VACUUM in progress is enough.
_VACUUM = text("VACUUM (SKIP_LOCKED) outbox_event")


def vacuum(conn: Connection) -> None:
    """``conn`` must be in autocommit mode: VACUUM cannot run inside a transaction."""
    conn.execute(_VACUUM)
