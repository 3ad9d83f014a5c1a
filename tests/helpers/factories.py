"""Rows written straight into the database, as the API or a worker would have written them."""

from __future__ import annotations

from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from app.core.domain import Priority


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
                    INSERT INTO notification (id, api_key_id, request_hash, type, priority,
                                              recipient_email, subject, body)
                    SELECT gen_random_uuid(), :key, '\\x00', 'MARKETING', :priority,
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
