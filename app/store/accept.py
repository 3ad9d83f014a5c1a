"""The accept statement: a batch of notifications, their deliveries and their outbox events in
one statement (the API's group commit, app/api/ingest.py, is its one caller).

The batch travels as one JSON parameter of a statement prepared once per connection: no
per-request planning, no per-column array adaptation. These functions take the psycopg2
connection itself (autocommit, so the statement commits as it ends, in one round trip), not a
SQLAlchemy ``Connection``: the exception to the store's convention, for the hottest statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

# The notifications, one delivery per channel and one outbox event per delivery, for a whole
# batch given as a JSON array of NewNotification. A notification whose (project,
# Idempotency-Key) is already taken is skipped with its deliveries, and is missing from the
# result: its request is then answered as a replay.
_PREPARE = """
    PREPARE accept_batch(json) AS
    WITH v AS (
        SELECT * FROM json_to_recordset($1) AS v(
            id uuid, project_id text, api_key_id uuid, idempotency_key text, request_hash bytea,
            request_id text, type text, category text, priority text, priority_rank smallint,
            recipient_email text, recipient_phone text, user_id text, device_tokens jsonb,
            webhook_url text, subject text, body text, html_body text, data jsonb,
            send_at timestamptz, expires_at timestamptz, deliveries json,
            template_key text, template_version integer, layout_version integer, locale text)
    ), n AS (
        INSERT INTO notification (id, project_id, api_key_id, idempotency_key, request_hash,
                                  request_id, type, category, priority, recipient_email,
                                  recipient_phone, user_id, device_tokens, webhook_url, subject,
                                  body, html_body, data, send_at, expires_at, template_key,
                                  template_version, layout_version, locale)
        SELECT id, project_id, api_key_id, idempotency_key, request_hash, request_id, type,
               category, priority, recipient_email, recipient_phone, user_id, device_tokens,
               webhook_url, subject, body, html_body, data, send_at, expires_at, template_key,
               template_version, layout_version, locale
        FROM v
        ON CONFLICT (project_id, idempotency_key) DO NOTHING
        RETURNING id
    ), d AS (
        INSERT INTO delivery (id, notification_id, channel)
        SELECT c.id, v.id, c.channel
        FROM v JOIN n ON n.id = v.id
        CROSS JOIN LATERAL json_to_recordset(v.deliveries) AS c(id uuid, channel text)
        RETURNING id, notification_id, channel
    ), o AS (
        INSERT INTO outbox_event (delivery_id, channel, priority, available_at, notification_id,
                                  request_id)
        SELECT d.id, d.channel, v.priority_rank, COALESCE(v.send_at, now()), v.id, v.request_id
        FROM d JOIN v ON v.id = d.notification_id
    )
    SELECT CAST(n.id AS text), now() AS created_at FROM n
"""
EXECUTE = "EXECUTE accept_batch(%s)"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: uuid.UUID
    channel: str


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One accepted request, as its rows will be written (field names are the columns)."""

    id: uuid.UUID
    project_id: str
    api_key_id: uuid.UUID
    idempotency_key: str | None
    request_hash: bytes | None  # only with an idempotency key: it tells a replay from a reuse
    request_id: str | None
    type: str
    category: str | None
    priority: str
    priority_rank: int
    recipient_email: str | None
    recipient_phone: str | None
    user_id: str | None
    device_tokens: list[str] | None
    webhook_url: str | None
    subject: str | None
    body: str | None  # None: the template renders it per recipient
    html_body: str | None
    data: dict[str, Any] | None
    send_at: datetime | None
    expires_at: datetime | None
    deliveries: tuple[NewDelivery, ...]
    # A templated notification's pinned template (app/api/templates.py) and request locale.
    template_key: str | None = None
    template_version: int | None = None
    layout_version: int | None = None
    locale: str | None = None


def _bytea(value: object) -> str:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(type(value).__name__)


def write_batch(connection: Any, batch: list[NewNotification]) -> dict[uuid.UUID, datetime]:
    """Write ``batch`` with one statement on ``connection`` (a psycopg2 connection in autocommit
    mode, on which ``prepare(connection)`` ran). Returns the creation time of every notification
    written; one whose Idempotency-Key was already taken is absent."""
    with connection.cursor() as cursor:
        cursor.execute(EXECUTE, (orjson.dumps(batch, default=_bytea).decode(),))
        return {uuid.UUID(row[0]): row[1] for row in cursor.fetchall()}


def prepare(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_PREPARE)
