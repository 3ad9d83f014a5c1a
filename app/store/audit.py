"""Every SQL statement on ``audit_log`` (its rows are written by the delivery status trigger of
migration 0001)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

# Bounded, so that one run never holds locks or bloats WAL for long.
_PURGE = text(
    """
    DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log
        WHERE created_at < now() - make_interval(secs => :age)
        LIMIT :limit
    )
    """
)


def purge(conn: Connection, older_than_seconds: float, limit: int) -> int:
    """Delete up to ``limit`` rows older than the age; returns how many."""
    return conn.execute(_PURGE, {"age": older_than_seconds, "limit": limit}).rowcount


# The project filter goes through the notification: audit rows carry no project of their own.
_TIMELINE = text(
    """
    SELECT a.id, a.delivery_id, a.channel, a.from_status, a.to_status, a.attempt, a.error_code,
           a.error, a.provider_message_id, a.created_at
    FROM audit_log a JOIN notification n ON n.id = a.notification_id
    WHERE a.notification_id = :notification_id AND n.project_id = :project_id
    ORDER BY a.created_at, a.id
    LIMIT :limit
    """
)

_RECENT_OUTCOMES = text(
    """
    SELECT count(*) FILTER (WHERE a.to_status = 'SENT') AS sent,
           count(*) FILTER (WHERE a.to_status = 'FAILED') AS failed
    FROM audit_log a JOIN notification n ON n.id = a.notification_id
    WHERE a.created_at > now() - make_interval(secs => :seconds) AND n.project_id = :project_id
      AND a.to_status IN ('SENT', 'FAILED')
    """
)


def timeline(
    conn: Connection, project_id: str, notification_id: uuid.UUID, limit: int = 500
) -> list[dict[str, Any]]:
    """Every status change of the notification's deliveries, oldest first."""
    rows = conn.execute(
        _TIMELINE,
        {"notification_id": str(notification_id), "project_id": project_id, "limit": limit},
    )
    return [
        {
            "deliveryId": r.delivery_id,
            "channel": r.channel,
            "fromStatus": r.from_status,
            "toStatus": r.to_status,
            "attempt": r.attempt,
            "errorCode": r.error_code,
            "error": r.error,
            "providerMessageId": r.provider_message_id,
            "at": r.created_at,
        }
        for r in rows
    ]


def recent_outcomes(conn: Connection, project_id: str, seconds: float) -> tuple[int, int]:
    """How many of the project's deliveries were sent and failed in the last ``seconds``."""
    row = conn.execute(_RECENT_OUTCOMES, {"seconds": seconds, "project_id": project_id}).one()
    return int(row.sent), int(row.failed)
