"""Rows written straight into the database, as the API or a worker would have written them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

from app.api.keys import DEFAULT_PROJECT, DEFAULT_SCOPES, IssuedKey, create_api_key, revoke_api_key
from app.core.domain import Channel, DeliveryStatus, Priority

# Every table a test writes, each listed before the tables it references.
TABLES = (
    "suppression",
    "preference",
    "category",
    "user_profile",
    "inbox_item",
    "audit_log",
    "outbox_event",
    "delivery_device",
    "push_device",
    "delivery",
    "notification",
    "template_version",
    "template",
    "api_key",
)


# The statuses a delivery reaches only by being tried: it has used an attempt.
_TRIED = {
    DeliveryStatus.SENDING,
    DeliveryStatus.RETRYING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
}


def make_api_key(
    engine: Engine,
    name: str = "tests",
    scopes: Iterable[str] = DEFAULT_SCOPES,
    *,
    project_id: str = DEFAULT_PROJECT,
    revoked: bool = False,
) -> IssuedKey:
    """A key issued as ``create-api-key`` issues it, revoked at once if ``revoked``."""
    key = create_api_key(engine, name, scopes, project_id)
    if revoked:
        revoke_api_key(engine, project_id, key.id)
    return key


@dataclass(frozen=True)
class MadeNotification:
    id: uuid.UUID
    api_key_id: uuid.UUID
    deliveries: dict[Channel, uuid.UUID]  # each channel's delivery id


def make_notification(
    engine: Engine,
    *,
    channels: Sequence[Channel | str] = (Channel.EMAIL,),
    status: DeliveryStatus | str = DeliveryStatus.PENDING,
    api_key_id: uuid.UUID | None = None,
    type: str = "TRANSACTIONAL",
    priority: Priority | str = Priority.NORMAL,
    subject: str | None = "Subject",
    body: str = "Body",
    recipient_email: str | None = "user@example.com",
    recipient_phone: str | None = None,
    user_id: str | None = None,
    webhook_url: str | None = None,
) -> MadeNotification:
    """A notification with one delivery per channel, each in ``status``, and each delivery's
    outbox event: due, as the API writes it, for a PENDING delivery; dispatched for any other
    status (the relay has passed it on). Without ``api_key_id``, a key is issued for it."""
    status, priority = DeliveryStatus(status), Priority(priority)
    if api_key_id is None:
        api_key_id = make_api_key(engine, "factory").id
    made = MadeNotification(
        uuid.uuid4(), api_key_id, {Channel(channel): uuid.uuid4() for channel in channels}
    )
    deliveries = [
        {
            "id": str(delivery_id),
            "notification_id": str(made.id),
            "channel": channel.value,
            "status": status.value,
            "attempts": int(status in _TRIED),
            "rank": priority.rank,
            "outbox_status": "PENDING" if status is DeliveryStatus.PENDING else "DISPATCHED",
        }
        for channel, delivery_id in made.deliveries.items()
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notification (id, project_id, api_key_id, type, priority,"
                " recipient_email, recipient_phone, user_id, webhook_url, subject, body)"
                " VALUES (:id, :project_id, :api_key_id, :type, :priority, :recipient_email,"
                " :recipient_phone, :user_id, :webhook_url, :subject, :body)"
            ),
            {
                "id": str(made.id),
                "project_id": DEFAULT_PROJECT,  # the project of the keys tests make
                "api_key_id": str(api_key_id),
                "type": type,
                "priority": priority.value,
                "recipient_email": recipient_email,
                "recipient_phone": recipient_phone,
                "user_id": user_id,
                "webhook_url": webhook_url,
                "subject": subject,
                "body": body,
            },
        )
        conn.execute(
            text(
                "INSERT INTO delivery (id, notification_id, channel, status, attempts, sent_at)"
                " VALUES (:id, :notification_id, :channel, :status, :attempts,"
                " CASE WHEN :status = 'SENT' THEN now() END)"
            ),
            deliveries,
        )
        conn.execute(
            text(
                "INSERT INTO outbox_event (delivery_id, channel, priority, notification_id, status,"
                " dispatched_at)"
                " VALUES (:id, :channel, :rank, :notification_id, :outbox_status,"
                " CASE WHEN :outbox_status = 'DISPATCHED' THEN now() END)"
            ),
            deliveries,
        )
    return made


def make_device(
    engine: Engine,
    user_id: str,
    platform: str,
    token: str,
    *,
    app_id: str = "com.example.app",
    locale: str | None = None,
    active: bool = True,
    deactivation_reason: str | None = None,
) -> uuid.UUID:
    """A registered PUSH device (deactivated now unless ``active``); returns its id."""
    device_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO push_device (id, project_id, user_id, platform, token, app_id, locale,"
                " active, deactivated_at, deactivation_reason)"
                " VALUES (:id, :project_id, :user_id, :platform, :token, :app_id, :locale, :active,"
                " CASE WHEN :active THEN NULL ELSE now() END, :reason)"
            ),
            {
                "id": str(device_id),
                "project_id": DEFAULT_PROJECT,
                "user_id": user_id,
                "platform": platform,
                "token": token,
                "app_id": app_id,
                "locale": locale,
                "active": active,
                "reason": deactivation_reason,
            },
        )
    return device_id


def insert_backlog(
    engine: Engine,
    count: int,
    *,
    priority: Priority = Priority.LOW,
    prefix: str = "u",
    template: str | None = None,
) -> None:
    """``count`` EMAIL notifications to ``{prefix}{i}@example.com``, each with its delivery and
    a due outbox event; with ``template`` (a key of project ``default``), each names its first
    version and carries ``data`` with ``orderId`` and ``name`` instead of a subject and body."""
    key = create_api_key(engine, f"backlog-{prefix}")
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                WITH n AS (
                    INSERT INTO notification (id, project_id, api_key_id, request_hash, type,
                                              priority, recipient_email, subject, body,
                                              template_key, template_version, data)
                    SELECT gen_random_uuid(), 'default', :key, '\\x00', 'MARKETING', :priority,
                           :prefix || i || '@example.com',
                           CASE WHEN :template IS NULL THEN 'Backlog ' || i END,
                           CASE WHEN :template IS NULL THEN 'body ' || i END,
                           :template, CASE WHEN :template IS NOT NULL THEN 1 END,
                           CASE WHEN :template IS NOT NULL
                                THEN jsonb_build_object('orderId', i, 'name', 'Ana ' || i) END
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
                "template": template,
            },
        )


def delete_all_rows(engine: Engine) -> None:
    """Empty every table with DELETE: for a handful of rows a fraction of a millisecond, where
    TRUNCATE (clean_state) takes about 20 ms, too slow once per Hypothesis example."""
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
