"""What the tests read back from the database."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) AS n FROM delivery GROUP BY status"))
        return {row.status: row.n for row in rows}


def outbox_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) AS n FROM outbox_event GROUP BY status"))
        return {row.status: row.n for row in rows}


def rows_written(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            text(
                "SELECT (SELECT count(*) FROM notification) + (SELECT count(*) FROM delivery)"
                " + (SELECT count(*) FROM outbox_event)"
            )
        )


def audit_trail(engine: Engine, delivery_id: str) -> list[tuple[str, str, int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT from_status, to_status, attempt, error_code FROM audit_log"
                " WHERE delivery_id = :id ORDER BY id"
            ),
            {"id": delivery_id},
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


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
