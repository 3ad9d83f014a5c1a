"""Reading, listing and cancelling notifications: every SQL statement on ``notification``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from app.core import cursors
from app.store import deliveries

# A notification's status summarises its deliveries. Defined once, in SQL, so that filtering a
# list by status and showing one notification can never disagree. A PUSH delivery also shows
# its per-device results (``delivery_device``, written by tasks/channels/push.py).
_VIEW = """
    SELECT n.id, n.type, n.priority, n.category, n.send_at, n.expires_at, n.created_at,
           s.status, s.deliveries
    FROM notification n
    CROSS JOIN LATERAL (
        SELECT CASE
                 WHEN bool_and(d.status = 'PENDING') THEN 'PENDING'
                 WHEN bool_or(d.status IN ('PENDING', 'QUEUED', 'SENDING', 'RETRYING'))
                      THEN 'PROCESSING'
                 WHEN bool_and(d.status = 'SKIPPED') THEN 'SKIPPED'
                 -- A skipped delivery was settled on purpose: it does not make a send partial.
                 WHEN bool_and(d.status IN ('SENT', 'SKIPPED')) THEN 'SENT'
                 WHEN bool_or(d.status = 'SENT') THEN 'PARTIALLY_SENT'
                 WHEN bool_and(d.status = 'CANCELLED') THEN 'CANCELLED'
                 WHEN bool_and(d.status = 'EXPIRED') THEN 'EXPIRED'
                 ELSE 'FAILED'
               END AS status,
               json_agg(json_build_object(
                   'id', d.id, 'channel', d.channel, 'status', d.status, 'attempts', d.attempts,
                   'errorCode', d.error_code, 'lastError', d.last_error,
                   'providerMessageId', d.provider_message_id,
                   'nextAttemptAt', d.next_attempt_at, 'createdAt', d.created_at,
                   'updatedAt', d.updated_at, 'sentAt', d.sent_at,
                   'locale', d.rendered_locale, 'content', d.rendered,
                   'devices', CASE WHEN d.channel = 'PUSH' THEN COALESCE(
                       (SELECT json_agg(json_build_object(
                            'deviceId', dd.device_id, 'platform', dd.platform,
                            'tokenPrefix', dd.token_prefix, 'status', dd.status,
                            'attempts', dd.attempts, 'errorCode', dd.error_code,
                            'lastError', dd.last_error,
                            'providerMessageId', dd.provider_message_id,
                            'updatedAt', dd.updated_at, 'sentAt', dd.sent_at) ORDER BY dd.id)
                        FROM delivery_device dd WHERE dd.delivery_id = d.id),
                       '[]') END) ORDER BY d.channel
               ) AS deliveries
        FROM delivery d WHERE d.notification_id = n.id
    ) s
"""


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    channel: str | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: tuple[datetime, uuid.UUID] | None = None
    limit: int = 50
    # The operator console's search (app/api/console): one id, a user, an address.
    notification_id: uuid.UUID | None = None
    user_id: str | None = None
    recipient: str | None = None


_BY_IDEMPOTENCY_KEY = text(
    "SELECT id, request_hash FROM notification"
    " WHERE project_id = :project_id AND idempotency_key = :key"
)


def find_by_idempotency_key(
    conn: Connection, project_id: str, idempotency_key: str
) -> tuple[uuid.UUID, bytes] | None:
    """The id and request hash of the notification the project accepted with this key, if any."""
    row = conn.execute(
        _BY_IDEMPOTENCY_KEY, {"project_id": project_id, "key": idempotency_key}
    ).first()
    return None if row is None else (row.id, bytes(row.request_hash))


def list_(
    conn: Connection, project_id: str, filters: ListFilters
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the project's notifications, newest first, and the cursor for the next page
    (None on the last)."""
    where: list[str] = ["n.project_id = :project_id"]
    params: dict[str, Any] = {"project_id": project_id, "limit": filters.limit + 1}
    if filters.type:
        where.append("n.type = :type")
        params["type"] = filters.type
    if filters.status:
        where.append("s.status = :status")
        params["status"] = filters.status
    if filters.channel:
        where.append(
            "EXISTS (SELECT 1 FROM delivery c WHERE c.notification_id = n.id"
            " AND c.channel = :channel)"
        )
        params["channel"] = filters.channel
    if filters.created_after:
        where.append("n.created_at > :created_after")
        params["created_after"] = filters.created_after
    if filters.created_before:
        where.append("n.created_at < :created_before")
        params["created_before"] = filters.created_before
    if filters.notification_id:
        where.append("n.id = :notification_id")
        params["notification_id"] = str(filters.notification_id)
    if filters.user_id:
        where.append("n.user_id = :user_id")
        params["user_id"] = filters.user_id
    if filters.recipient:
        # Any address the notification was sent to; case-blind, as mail domains are.
        where.append(
            "(lower(n.recipient_email) = lower(:recipient) OR n.recipient_phone = :recipient"
            " OR n.webhook_url = :recipient)"
        )
        params["recipient"] = filters.recipient
    if filters.cursor:
        where.append("(n.created_at, n.id) < (:cursor_created, :cursor_id)")
        params["cursor_created"], cursor_id = filters.cursor
        params["cursor_id"] = str(cursor_id)
    sql = _VIEW + " WHERE " + " AND ".join(where)
    sql += " ORDER BY n.created_at DESC, n.id DESC LIMIT :limit"
    rows = conn.execute(text(sql), params).all()
    page = [_as_view(row) for row in rows[: filters.limit]]
    has_more = len(rows) > filters.limit
    next_cursor = encode_cursor(rows[filters.limit - 1]) if has_more else None
    return page, next_cursor


def cancel(
    conn: Connection, project_id: str, notification_id: uuid.UUID
) -> tuple[dict[str, Any] | None, int]:
    """Cancel what has not been sent yet. Returns the notification (None if the project has no
    such notification) and how many deliveries were cancelled."""
    found = get(conn, project_id, notification_id)
    if found is None:
        return None, 0
    cancelled = deliveries.cancel(conn, notification_id)
    return get(conn, project_id, notification_id), len(cancelled)


def encode_cursor(row: Any) -> str:
    """An opaque, URL-safe token for the position after ``row``."""
    return cursors.wrap(f"{row.created_at.isoformat()}|{row.id}")


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for anything this API did not issue."""
    created, _, ident = cursors.unwrap(raw).partition("|")
    when = datetime.fromisoformat(created)
    if when.tzinfo is None:
        raise ValueError("not a cursor")
    # In UTC, as issued: an offset PostgreSQL cannot take (it stops at ±15:59) or a moment
    # outside the calendar in UTC is no position of ours.
    try:
        when = when.astimezone(UTC)
    except OverflowError:
        raise ValueError("not a cursor") from None
    return when, uuid.UUID(ident)


def get(conn: Connection, project_id: str, notification_id: uuid.UUID) -> dict[str, Any] | None:
    """The project's notification with this id, or None (another project's is not found)."""
    row = conn.execute(
        text(_VIEW + " WHERE n.id = :id AND n.project_id = :project_id"),
        {"id": str(notification_id), "project_id": project_id},
    ).first()
    return _as_view(row) if row is not None else None


_DELIVERY_EXISTS = text(
    "SELECT 1 FROM delivery d JOIN notification n ON n.id = d.notification_id"
    " WHERE d.id = :id AND n.project_id = :project_id"
)


def delivery_exists(conn: Connection, project_id: str, delivery_id: uuid.UUID) -> bool:
    """Whether the project has a delivery with this id (in any status)."""
    found = conn.execute(_DELIVERY_EXISTS, {"id": str(delivery_id), "project_id": project_id})
    return found.first() is not None


_CONTENT = text(
    """
    SELECT recipient_email, recipient_phone, user_id, webhook_url, subject, body, html_body, data,
           request_id, idempotency_key
    FROM notification WHERE id = :id AND project_id = :project_id
    """
)


def content(conn: Connection, project_id: str, notification_id: uuid.UUID) -> dict[str, Any] | None:
    """What the notification was sent with (its recipients and rendered content)."""
    row = conn.execute(_CONTENT, {"id": str(notification_id), "project_id": project_id}).first()
    if row is None:
        return None
    return {
        "recipientEmail": row.recipient_email,
        "recipientPhone": row.recipient_phone,
        "userId": row.user_id,
        "webhookUrl": row.webhook_url,
        "subject": row.subject,
        "body": row.body,
        "htmlBody": row.html_body,
        "data": row.data,
        "requestId": row.request_id,
        "idempotencyKey": row.idempotency_key,
    }


def _as_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "priority": row.priority,
        "category": row.category,
        "status": row.status,
        "sendAt": row.send_at,
        "expiresAt": row.expires_at,
        "createdAt": row.created_at,
        "deliveries": row.deliveries,
    }
