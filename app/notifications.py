"""Accepting, reading, listing and cancelling notifications: what the API does to the database."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from app import cursors, transitions
from app.db import transaction
from app.ingest import AcceptWriter, NewDelivery, NewNotification
from app.schemas import NotificationCreate

# A notification's status summarises its deliveries. Defined once, in SQL, so that filtering a
# list by status and showing one notification can never disagree. A PUSH delivery also shows
# its per-device results (``delivery_device``, written by tasks/channels/push.py).
_VIEW = """
    SELECT n.id, n.type, n.priority, n.send_at, n.expires_at, n.created_at, s.status, s.deliveries
    FROM notification n
    CROSS JOIN LATERAL (
        SELECT CASE
                 WHEN bool_and(d.status = 'PENDING') THEN 'PENDING'
                 WHEN bool_or(d.status IN ('PENDING', 'QUEUED', 'SENDING', 'RETRYING'))
                      THEN 'PROCESSING'
                 WHEN bool_and(d.status = 'SENT') THEN 'SENT'
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


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Accepted:
    notification: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    channel: str | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: tuple[datetime, uuid.UUID] | None = None
    limit: int = 50


def request_fingerprint(request: NotificationCreate) -> bytes:
    """Hash of the request's meaning, so key order and whitespace do not make a different body."""
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


def accept(
    writer: AcceptWriter,
    api_key_id: uuid.UUID,
    request: NotificationCreate,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> Accepted:
    """Commit the notification with its deliveries and outbox events (through the process's
    group-committing writer, app/ingest.py), or replay a prior accept. The caller wakes the
    relay after this returns, never before."""
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = request_fingerprint(request)
        replay = _replay(writer.engine, api_key_id, idempotency_key, fingerprint)
        if replay is not None:
            return replay
    new = NewNotification(
        id=uuid.uuid4(),
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        request_id=request_id,
        type=request.type.value,
        priority=request.priority.value,
        priority_rank=request.priority.rank,
        recipient_email=request.recipient_email,
        recipient_phone=request.recipient_phone,
        user_id=request.user_id,
        device_tokens=request.device_tokens,
        webhook_url=str(request.webhook_url) if request.webhook_url else None,
        subject=request.subject,
        body=request.body,
        html_body=request.html_body,
        data=request.data,
        send_at=request.send_at,
        expires_at=request.expires_at,
        deliveries=tuple(NewDelivery(uuid.uuid4(), c.value) for c in request.channels),
    )
    created_at = writer.write(new)
    if created_at is None:
        # Two requests with one Idempotency-Key raced; the other committed first.
        assert idempotency_key is not None and fingerprint is not None
        replay = _replay(writer.engine, api_key_id, idempotency_key, fingerprint)
        assert replay is not None, "a skipped notification always has a committed twin"
        return replay
    return Accepted(_accepted_view(new, created_at), replayed=False)


def get(engine: Engine, notification_id: uuid.UUID) -> dict[str, Any] | None:
    with transaction(engine) as conn:
        return _get(conn, notification_id)


def list_(engine: Engine, filters: ListFilters) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor for the next page (None on the last)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": filters.limit + 1}
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
    if filters.cursor:
        where.append("(n.created_at, n.id) < (:cursor_created, :cursor_id)")
        params["cursor_created"], cursor_id = filters.cursor
        params["cursor_id"] = str(cursor_id)
    sql = _VIEW + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY n.created_at DESC, n.id DESC LIMIT :limit"
    with transaction(engine) as conn:
        rows = conn.execute(text(sql), params).all()
    page = [_as_view(row) for row in rows[: filters.limit]]
    has_more = len(rows) > filters.limit
    next_cursor = encode_cursor(rows[filters.limit - 1]) if has_more else None
    return page, next_cursor


def cancel(engine: Engine, notification_id: uuid.UUID) -> tuple[dict[str, Any] | None, int]:
    """Cancel what has not been sent yet. Returns the notification and how many were cancelled."""
    with transaction(engine) as conn:
        cancelled = transitions.cancel(conn, notification_id)
        return _get(conn, notification_id), len(cancelled)


def encode_cursor(row: Any) -> str:
    """An opaque, URL-safe token for the position after ``row``."""
    return cursors.wrap(f"{row.created_at.isoformat()}|{row.id}")


def decode_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for anything this API did not issue."""
    created, _, ident = cursors.unwrap(raw).partition("|")
    when = datetime.fromisoformat(created)
    if when.tzinfo is None:
        raise ValueError("not a cursor")
    return when, uuid.UUID(ident)


def _replay(
    engine: Engine, api_key_id: uuid.UUID, idempotency_key: str, fingerprint: bytes
) -> Accepted | None:
    with transaction(engine) as conn:
        row = conn.execute(
            text(
                "SELECT id, request_hash FROM notification"
                " WHERE api_key_id = :api_key_id AND idempotency_key = :key"
            ),
            {"api_key_id": str(api_key_id), "key": idempotency_key},
        ).first()
        if row is None:
            return None
        if bytes(row.request_hash) != fingerprint:
            raise IdempotencyConflict(idempotency_key)
        view = _get(conn, row.id)
    assert view is not None
    return Accepted(view, replayed=True)


def _accepted_view(new: NewNotification, created_at: datetime) -> dict[str, Any]:
    """What GET would show right after the commit, without reading it back."""
    return {
        "id": new.id,
        "type": new.type,
        "priority": new.priority,
        "status": "PENDING",
        "sendAt": new.send_at,
        "expiresAt": new.expires_at,
        "createdAt": created_at,
        "deliveries": [
            {
                "id": delivery_id,
                "channel": channel,
                "status": "PENDING",
                "attempts": 0,
                "errorCode": None,
                "lastError": None,
                "providerMessageId": None,
                "nextAttemptAt": None,
                "createdAt": created_at,
                "updatedAt": created_at,
                "sentAt": None,
                # As _VIEW shows it: PUSH lists its devices from the first attempt on.
                "devices": [] if channel == "PUSH" else None,
            }
            for delivery_id, channel in sorted(
                ((d.id, d.channel) for d in new.deliveries), key=lambda pair: pair[1]
            )
        ],
    }


def _get(conn: Connection, notification_id: uuid.UUID) -> dict[str, Any] | None:
    row = conn.execute(text(_VIEW + " WHERE n.id = :id"), {"id": str(notification_id)}).first()
    return _as_view(row) if row is not None else None


def _as_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "priority": row.priority,
        "status": row.status,
        "sendAt": row.send_at,
        "expiresAt": row.expires_at,
        "createdAt": row.created_at,
        "deliveries": row.deliveries,
    }
