"""Bulk test data (a backlog written the way the API writes it, but in one statement), and what
the tests read back from the database."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from app.core.domain import Priority

# Every table a test writes, each listed before the tables it references.
TABLES = (
    "inbox_item",
    "audit_log",
    "outbox_event",
    "delivery_device",
    "push_device",
    "delivery",
    "notification",
    "api_key",
)


def insert_backlog(
    engine: Engine, count: int, *, priority: Priority = Priority.LOW, prefix: str = "u"
) -> None:
    """``count`` EMAIL notifications to ``{prefix}{i}@example.com``, each with its delivery and
    a due outbox event."""
    key = create_api_key(engine, f"backlog-{prefix}")
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                WITH n AS (
                    INSERT INTO notification (id, project_id, api_key_id, request_hash, type,
                                              priority, recipient_email, subject, body)
                    SELECT gen_random_uuid(), 'default', :key, '\\x00', 'MARKETING', :priority,
                           :prefix || i || '@example.com', 'Backlog ' || i, 'body ' || i
                    FROM generate_series(1, :count) AS i
                    RETURNING id
                ), d AS (
                    INSERT INTO delivery (id, notification_id, channel)
                    SELECT gen_random_uuid(), n.id, 'EMAIL' FROM n
                    RETURNING id, notification_id
                )
                INSERT INTO outbox_event (delivery_id, channel, priority, notification_id)
                SELECT d.id, 'EMAIL', :rank, d.notification_id FROM d
                """
            ),
            {
                "key": str(key.id),
                "priority": priority.value,
                "rank": priority.rank,
                "prefix": prefix,
                "count": count,
            },
        )


def delete_all_rows(engine: Engine) -> None:
    """Empty every table with DELETE: for a handful of rows a fraction of a millisecond, where
    TRUNCATE (clean_state) takes about 20 ms, too slow once per Hypothesis example."""
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) AS n FROM delivery GROUP BY status"))
        return {row.status: row.n for row in rows}


def outbox_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) AS n FROM outbox_event GROUP BY status"))
        return {row.status: row.n for row in rows}


def wait_for_lock_waiter(engine: Engine, timeout: float = 10.0) -> None:
    """Return once a session of this database waits for a lock; raise if none does in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A connection of its own each time: pg_stat_activity is read once per transaction.
        with engine.connect() as conn:
            if conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ):
                return
        time.sleep(0.02)
    raise AssertionError("no session waited for the lock")
