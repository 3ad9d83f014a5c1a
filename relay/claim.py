"""The claim: which outbox rows one relay takes, safely beside any number of other relays."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Connection, text

# FOR UPDATE SKIP LOCKED gives each due row to exactly one relay: a row another relay holds is
# skipped, not waited for. The rows are marked DISPATCHED (and their deliveries QUEUED) in the
# claiming transaction, which the caller commits only after publishing; a relay that dies before
# committing rolls back, and the rows are claimed again. HIGH (rank 0) first, then oldest due.
_CLAIM = text(
    """
    WITH claimed AS (
        UPDATE outbox_event
        SET status = 'DISPATCHED', dispatched_at = now(), attempts = attempts + 1
        WHERE id IN (
            SELECT id FROM outbox_event
            WHERE status = 'PENDING' AND available_at <= now()
            ORDER BY priority, available_at
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        )
        RETURNING delivery_id, channel, priority
    ), queued AS (
        UPDATE delivery d SET status = 'QUEUED', updated_at = now()
        FROM claimed c
        WHERE d.id = c.delivery_id AND d.status = 'PENDING'
    )
    SELECT c.delivery_id, c.channel, c.priority, d.notification_id, n.request_id
    FROM claimed c
    JOIN delivery d ON d.id = c.delivery_id
    JOIN notification n ON n.id = d.notification_id
    """
)


@dataclass(frozen=True)
class ClaimedEvent:
    delivery_id: UUID
    channel: str
    priority: int
    notification_id: UUID
    request_id: str | None


def claim_due(conn: Connection, limit: int) -> list[ClaimedEvent]:
    return [ClaimedEvent(*row) for row in conn.execute(_CLAIM, {"limit": limit})]
