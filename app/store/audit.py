"""Every SQL statement on ``audit_log`` (its rows are written by the delivery status trigger of
migration 0001)."""

from __future__ import annotations

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
