"""Request and response schemas: validation, and the source of the OpenAPI document."""

from __future__ import annotations

import math
import re
import uuid
import zoneinfo
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from app.core.domain import (
    CATEGORY_KEY_PATTERN,
    Channel,
    DeliveryStatus,
    DeviceDeliveryStatus,
    NotificationStatus,
    NotificationType,
    Priority,
    PushPlatform,
    SuppressionReason,
)
from app.core.sms import sms_segments

# C0 (tab included), DEL, C1 and the Unicode line and paragraph separators: a mail library may
# fold, refuse or pass any of them raw into a header, so values that become headers refuse them.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_control_characters(value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters (C0, C1, DEL, U+2028, U+2029)",
        )
    return value


def _plain_address(value: str) -> str:
    """``local@domain`` and nothing a mail server would rewrite: no display name, group, comment,
    quoted local part, encoded word or domain literal. Parsed by email-validator; an
    internationalised domain or local part is accepted here and sent as IDNA or over SMTPUTF8."""
    _no_control_characters(value)
    try:
        validate_email(
            value,
            check_deliverability=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
        )
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "email", "not a plain address: {reason}", {"reason": str(exc)}
        ) from None
    if "=?" in value.rpartition("@")[0]:
        raise PydanticCustomError(
            "email", "not a plain address: an encoded word (=?...?=) is not an address"
        )
    return value


HeaderSafeText = Annotated[str, AfterValidator(_no_control_characters)]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(_plain_address)]
E164Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w.:@-]+$")]
# Printable ASCII without spaces: what FCM registration tokens and APNs hex tokens are made of.
DeviceToken = Annotated[
    str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")
]
AppId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\w.:-]+$")]
Locale = Annotated[
    str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8})*$")
]

# A template's or layout's key: what its URL and a notification name it by.
TemplateKey = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", max_length=128)
]

CategoryKey = Annotated[str, StringConstraints(pattern=CATEGORY_KEY_PATTERN)]

MAX_DEVICE_TOKENS = 100

# Examples of the document (app/api/openapi.py): each top-level model carries one in its JSON
# schema (``examples``), and the document shows it with every request and answer of that model.
_NOTIFICATION_ID = "c7487285-4c1e-4f4b-9a55-2f4a5e0e7d11"
_DELIVERY_EXAMPLE = {
    "id": "7793daf9-3c1b-4f0e-8d7e-2b6f0c9a1e22",
    "channel": "EMAIL",
    "status": "SENT",
    "attempts": 1,
    "errorCode": None,
    "lastError": None,
    "providerMessageId": "<7793daf9-3c1b-4f0e-8d7e-2b6f0c9a1e22@example.com>",
    "nextAttemptAt": None,
    "createdAt": "2030-01-01T09:00:00Z",
    "updatedAt": "2030-01-01T09:00:01Z",
    "sentAt": "2030-01-01T09:00:01Z",
}
_NOTIFICATION_EXAMPLE = {
    "id": _NOTIFICATION_ID,
    "type": "TRANSACTIONAL",
    "priority": "NORMAL",
    "status": "SENT",
    "sendAt": None,
    "expiresAt": None,
    "createdAt": "2030-01-01T09:00:00Z",
    "deliveries": [_DELIVERY_EXAMPLE],
}
_DEVICE_EXAMPLE = {
    "id": "0b7c3f8e-1d2a-4c5b-9e6f-7a8b9c0d1e2f",
    "userId": "ana",
    "platform": "fcm",
    "tokenPrefix": "fGk2pQ",
    "appId": "com.example.app",
    "locale": "pt-BR",
    "active": True,
    "deactivatedAt": None,
    "deactivationReason": None,
    "createdAt": "2030-01-01T09:00:00Z",
    "updatedAt": "2030-01-01T09:00:00Z",
}
_INBOX_ITEM_EXAMPLE = {
    "id": "5d1e2f3a-4b5c-4d7e-8f90-a1b2c3d4e5f6",
    "notificationId": _NOTIFICATION_ID,
    "category": "TRANSACTIONAL",
    "title": "Your order shipped",
    "body": "It arrives on Thursday.",
    "data": {"orderId": 1234},
    "createdAt": "2030-01-01T09:00:01Z",
    "readAt": None,
    "cursor": "MTg5MzQ4ODQwMTAwMDAwMDo1ZDFlMmYzYQ",
}
_KEY_ID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


def _example(example: dict[str, Any], config: ConfigDict | None = None) -> ConfigDict:
    """A model's config (``config`` and) its one example."""
    return ConfigDict(**(config or {}), json_schema_extra={"examples": [example]})


_VIEW = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


def _to_utc(moment: datetime) -> datetime:
    # PostgreSQL accepts UTC offsets only up to ±15:59, Python up to ±23:59: normalising here
    # keeps every accepted time storable, and a time that leaves the calendar in UTC is refused.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the supported range of dates") from None


# A moment with a time zone, as every datetime the API accepts: stored and compared in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Camel(BaseModel):
    """Fields are camelCase on the wire; unknown fields are an error, not silently dropped; no
    string anywhere in a field holds U+0000."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_character(cls, value: Any) -> Any:
        # PostgreSQL's text and jsonb cannot store U+0000: refused here and named, rather than
        # failing in the database as a 500 (found by the fuzz test).
        if _holds_nul(value):
            raise PydanticCustomError(
                "no_nul_character", "must not contain the NUL character (U+0000)"
            )
        return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


# How deep ``data`` may nest (``data`` itself is level 1), and the integers it may hold: what
# every consumer of a webhook or template reads exactly (PostgreSQL's jsonb keeps more).
MAX_DATA_DEPTH = 32
_INT64 = range(-(2**63), 2**63)


def _storable_json(value: Any, depth: int = 1) -> None:
    if isinstance(value, dict | list):
        if depth > MAX_DATA_DEPTH:
            raise PydanticCustomError(
                "json_too_deep", "nested deeper than {limit} levels", {"limit": MAX_DATA_DEPTH}
            )
        for item in value.values() if isinstance(value, dict) else value:
            _storable_json(item, depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and value not in _INT64:
        raise PydanticCustomError("number_out_of_range", "integers must fit in 64 bits (signed)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("number_out_of_range", "numbers must be finite")


class NotificationCreate(_Camel):
    model_config = _example(
        {
            "priority": "NORMAL",
            "channels": ["EMAIL", "IN_APP"],
            "recipientEmail": "ana@example.com",
            "userId": "ana",
            "subject": "Your order shipped",
            "body": "It arrives on Thursday.",
            "data": {"orderId": 1234},
        }
    )

    type: NotificationType = NotificationType.TRANSACTIONAL
    priority: Priority = Priority.NORMAL
    category: CategoryKey | None = None
    channels: list[Channel] = Field(min_length=1, max_length=len(Channel))
    recipient_email: Email | None = None
    recipient_phone: E164Phone | None = None
    user_id: UserId | None = None
    device_tokens: list[DeviceToken] | None = Field(
        default=None, min_length=1, max_length=MAX_DEVICE_TOKENS
    )
    webhook_url: AnyHttpUrl | None = Field(default=None)
    subject: Annotated[HeaderSafeText, StringConstraints(max_length=998)] | None = None
    body: str | None = Field(default=None, min_length=1, max_length=50_000)
    html_body: str | None = Field(default=None, max_length=200_000)
    data: dict[str, Any] | None = None
    send_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    template: TemplateKey | None = Field(
        default=None, description="A stored template to render instead of subject and body"
    )
    template_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Default: the latest, pinned at accept"
    )
    locale: Locale | None = Field(
        default=None, description="The recipient's language for a template (pt-BR → pt → default)"
    )

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError("each channel may appear only once")
        return channels

    @field_validator("data")
    @classmethod
    def _data_storable(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        # Refused here and named, rather than by the database or the encoder of the batch.
        if data is not None:
            _storable_json(data)
        return data

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_length(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is not None and len(str(url)) > 2048:
            raise ValueError("URL longer than 2048 characters")
        return url


# The request fields each channel delivers to (camelCase names, as the caller wrote them).
# A channel is satisfied when every group has at least one field present. A ``userId`` stands
# for an address: the worker takes it from the user's profile when it delivers.
CHANNEL_REQUIREMENTS: dict[Channel, tuple[tuple[str, ...], ...]] = {
    Channel.EMAIL: (("recipientEmail", "userId"), ("subject",)),
    Channel.PUSH: (("userId", "deviceTokens"),),
    Channel.SMS: (("recipientPhone", "userId"),),
    Channel.WEBHOOK: (("webhookUrl",),),
    Channel.IN_APP: (("userId",),),
}


_FIELD_OF_ALIAS = {info.alias: name for name, info in NotificationCreate.model_fields.items()}


def missing_recipients(request: NotificationCreate) -> list[FieldError]:
    """Field errors for every channel whose recipient fields the request left out."""
    errors = []
    for channel in request.channels:
        for group in CHANNEL_REQUIREMENTS[channel]:
            if request.template is not None and group == ("subject",):
                continue  # the template gives the subject (app/api/templates.py checks it)
            if all(getattr(request, _FIELD_OF_ALIAS[name]) is None for name in group):
                errors.append(
                    FieldError(
                        field=group[0],
                        rule="required_for_channel",
                        message=f"{' or '.join(group)} is required for channel {channel.value}",
                    )
                )
    return errors


def sms_body_too_long(request: NotificationCreate, max_segments: int) -> list[FieldError]:
    """A field error when SMS is among the channels and the body costs too many segments."""
    if Channel.SMS not in request.channels or request.body is None:
        return []
    segments = sms_segments(request.body)
    if segments.count <= max_segments:
        return []
    return [
        FieldError(
            field="body",
            rule="sms_too_many_segments",
            message=f"body is {segments.count} SMS segments ({segments.encoding});"
            f" at most {max_segments} are allowed for channel SMS",
        )
    ]


class ListQuery(_Camel):
    model_config = ConfigDict(
        alias_generator=None, extra="forbid", validate_by_alias=True, validate_by_name=True
    )

    status: NotificationStatus | None = None
    channel: Channel | None = None
    type: NotificationType | None = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: int = Field(default=50, ge=1, le=100)


class DeviceDeliveryView(_Camel):
    """One device's share of a PUSH delivery."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    device_id: uuid.UUID | None  # None once the device was removed from the registry
    platform: PushPlatform
    token_prefix: str
    status: DeviceDeliveryStatus
    attempts: int
    error_code: str | None
    last_error: str | None
    provider_message_id: str | None
    updated_at: datetime
    sent_at: datetime | None


class DeliveryView(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    id: uuid.UUID
    channel: Channel
    status: DeliveryStatus
    attempts: int
    error_code: str | None
    last_error: str | None
    provider_message_id: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    devices: list[DeviceDeliveryView] | None = None  # PUSH only: one entry per device
    locale: str | None = Field(
        default=None, description="Templated: the template locale used (null: its default)"
    )
    content: dict[str, Any] | None = Field(
        default=None, description="Templated: the content rendered for the recipient, as sent"
    )


class NotificationView(_Camel):
    model_config = _example(_NOTIFICATION_EXAMPLE, _VIEW)

    id: uuid.UUID
    type: NotificationType
    priority: Priority
    category: str | None = None
    status: NotificationStatus
    send_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    deliveries: list[DeliveryView]


class NotificationPage(_Camel):
    model_config = _example({"items": [_NOTIFICATION_EXAMPLE], "nextCursor": "MjAzMDAxMDE"}, _VIEW)

    items: list[NotificationView]
    next_cursor: str | None


class CancelResult(_Camel):
    model_config = _example(
        {
            "cancelled": 1,
            "notification": {
                **_NOTIFICATION_EXAMPLE,
                "status": "CANCELLED",
                "deliveries": [
                    {
                        **_DELIVERY_EXAMPLE,
                        "status": "CANCELLED",
                        "attempts": 0,
                        "providerMessageId": None,
                        "sentAt": None,
                    }
                ],
            },
        },
        _VIEW,
    )

    cancelled: int
    notification: NotificationView


class DeviceRegistration(_Camel):
    """``PUT /users/{userId}/devices``: register a device, or update the one with this token."""

    model_config = _example(
        {
            "platform": "fcm",
            "token": "fGk2pQ:APA91bH-example",
            "appId": "com.example.app",
            "locale": "pt-BR",
        }
    )

    platform: PushPlatform
    token: DeviceToken
    app_id: AppId
    locale: Locale | None = None

    @field_validator("token")
    @classmethod
    def _apns_token_is_hex(cls, token: str, info: ValidationInfo) -> str:
        if info.data.get("platform") is PushPlatform.APNS and not _HEX_TOKEN.fullmatch(token):
            raise PydanticCustomError(
                "apns_token_format", "an APNs device token is an even number of hex digits"
            )
        return token


_HEX_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2})+")


class DeviceView(_Camel):
    """A registered device. The token itself is never shown back, only its first characters."""

    model_config = _example(_DEVICE_EXAMPLE, _VIEW)

    id: uuid.UUID
    user_id: str
    platform: PushPlatform
    token_prefix: str
    app_id: str
    locale: str | None
    active: bool
    deactivated_at: datetime | None
    deactivation_reason: str | None
    created_at: datetime
    updated_at: datetime


class DeviceList(_Camel):
    model_config = _example({"items": [_DEVICE_EXAMPLE]}, _VIEW)

    items: list[DeviceView]


class UserPath(_Camel):
    user_id: UserId


class DevicePath(UserPath):
    device_id: uuid.UUID


class InboxQuery(_Camel):
    model_config = ConfigDict(
        alias_generator=None, extra="forbid", validate_by_alias=True, validate_by_name=True
    )

    unread: bool | None = None
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: int = Field(default=50, ge=1, le=100)


class InboxPath(BaseModel):
    user_id: UserId


class InboxItemPath(BaseModel):
    user_id: UserId
    item_id: uuid.UUID


class InboxItemView(_Camel):
    model_config = _example(_INBOX_ITEM_EXAMPLE, _VIEW)

    id: uuid.UUID
    notification_id: uuid.UUID
    category: NotificationType
    title: str | None
    body: str
    data: dict[str, Any] | None
    created_at: datetime
    read_at: datetime | None
    cursor: str = Field(description="This item's position: pass it back to read what followed")


class InboxPage(_Camel):
    model_config = _example(
        {"items": [_INBOX_ITEM_EXAMPLE], "nextCursor": None, "unreadCount": 1}, _VIEW
    )

    items: list[InboxItemView]
    next_cursor: str | None
    unread_count: int


class InboxReadResult(_Camel):
    model_config = _example({"marked": 3, "unreadCount": 0}, _VIEW)

    marked: int
    unread_count: int


class WsToken(_Camel):
    model_config = _example(
        {
            "token": "v1.eyJwIjoiZGVmYXVsdCIsInUiOiJhbmEifQ.c2lnbmF0dXJl",
            "expiresAt": "2030-01-01T09:02:00Z",
            "url": "/ws/notifications",
        },
        _VIEW,
    )

    token: str
    expires_at: datetime
    url: str = Field(description="The WebSocket path; send the token in the first message")


class HealthCheck(BaseModel):
    model_config = _example({"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}})

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class FieldError(BaseModel):
    field: str
    rule: str
    message: str
    # Only for a template that does not compile: left out of every body otherwise.
    line: int | None = Field(default=None, exclude_if=lambda value: value is None)
    column: int | None = Field(default=None, exclude_if=lambda value: value is None)


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorBody(BaseModel):
    """The one error shape of every route: a code, a message and each field's broken rule."""

    model_config = _example(
        {
            "error": {
                "code": "validation_failed",
                "message": "The request body is invalid.",
                "fields": [
                    {"field": "channels[0]", "rule": "enum", "message": "Input should be 'EMAIL'"}
                ],
            }
        }
    )

    error: ErrorDetail


Scope = Literal["send", "read", "admin"]


class ApiKeyCreate(_Camel):
    model_config = _example({"name": "billing-service", "scopes": ["send", "read"]})

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default=["send", "read"], min_length=1, max_length=3)


class _KeyView(_Camel):
    """Key views are built from rows and issued keys by field name and sent in camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel, serialize_by_alias=True, validate_by_name=True
    )


class ApiKeyView(_KeyView):
    model_config = _example(
        {
            "id": _KEY_ID,
            "projectId": "default",
            "name": "billing-service",
            "keyPrefix": "nsk_AbCd",
            "scopes": ["send", "read"],
            "createdAt": "2030-01-01T09:00:00Z",
            "revokedAt": None,
            "rotatedFrom": None,
        }
    )

    id: uuid.UUID
    project_id: str
    name: str
    key_prefix: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None
    rotated_from: uuid.UUID | None


class RotatedKeyView(_KeyView):
    """A rotated key's replacement. Its webhook secret is the old key's, shown only when that
    key was issued: a stolen admin key cannot read it back by rotating."""

    model_config = _example(
        {
            "id": "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
            "projectId": "default",
            "name": "billing-service",
            "key": "nsk_newKeyShownOnce",
            "scopes": ["send", "read"],
            "rotatedFrom": _KEY_ID,
        }
    )

    id: uuid.UUID
    project_id: str
    name: str
    key: str
    scopes: list[Scope]
    rotated_from: uuid.UUID

    @classmethod
    def from_issued(cls, issued: Any, rotated_from: uuid.UUID) -> RotatedKeyView:
        return cls(
            id=issued.id,
            project_id=issued.project_id,
            name=issued.name,
            key=issued.key,
            scopes=list(issued.scopes),
            rotated_from=rotated_from,
        )


class IssuedKeyView(_KeyView):
    """A new key and its webhook signing secret: the only time either is shown."""

    model_config = _example(
        {
            "id": _KEY_ID,
            "projectId": "default",
            "name": "billing-service",
            "key": "nsk_keyShownOnce",
            "webhookSecret": "whsec_secretShownOnce",
            "scopes": ["send", "read"],
        }
    )

    id: uuid.UUID
    project_id: str
    name: str
    key: str
    webhook_secret: str
    scopes: list[Scope]

    @classmethod
    def from_issued(cls, issued: Any) -> IssuedKeyView:
        return cls(
            id=issued.id,
            project_id=issued.project_id,
            name=issued.name,
            key=issued.key,
            webhook_secret=issued.webhook_secret,
            scopes=list(issued.scopes),
        )


# The operator console (app/api/console): search, one notification's history, retry, summary.


class ConsoleQuery(ListQuery):
    """The list's filters, and those an operator searches by."""

    id: uuid.UUID | None = None
    user_id: UserId | None = None
    recipient: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="An email address, phone number or webhook URL sent to"
    )


class NotificationContent(_Camel):
    """What a notification was sent with: its recipients and rendered content."""

    model_config = _VIEW

    recipient_email: str | None
    recipient_phone: str | None
    user_id: str | None
    webhook_url: str | None
    subject: str | None
    body: str | None = Field(description="null when a template renders it per delivery")
    html_body: str | None
    data: dict[str, Any] | None
    request_id: str | None
    idempotency_key: str | None


class AuditEntry(_Camel):
    """One status change of one delivery (``audit_log``)."""

    model_config = _VIEW

    delivery_id: uuid.UUID
    channel: Channel
    from_status: DeliveryStatus
    to_status: DeliveryStatus
    attempt: int
    error_code: str | None
    error: str | None
    provider_message_id: str | None
    at: datetime


_HISTORY_EXAMPLE = {
    "notification": _NOTIFICATION_EXAMPLE,
    "content": {
        "recipientEmail": "ana@example.com",
        "recipientPhone": None,
        "userId": "ana",
        "webhookUrl": None,
        "subject": "Your order shipped",
        "body": "It arrives on Thursday.",
        "htmlBody": None,
        "data": {"orderId": 1234},
        "requestId": "4f1c2b9e0d8a7f6e5d4c3b2a19081726",
        "idempotencyKey": "order-1234-shipped",
    },
    "timeline": [
        {
            "deliveryId": _DELIVERY_EXAMPLE["id"],
            "channel": "EMAIL",
            "fromStatus": fro,
            "toStatus": to,
            "attempt": attempt,
            "errorCode": None,
            "error": None,
            "providerMessageId": None,
            "at": "2030-01-01T09:00:01Z",
        }
        for fro, to, attempt in [
            ("PENDING", "QUEUED", 0),
            ("QUEUED", "SENDING", 1),
            ("SENDING", "SENT", 1),
        ]
    ],
}


class NotificationHistory(_Camel):
    """Everything about one notification: its deliveries, content and status changes."""

    model_config = _example(_HISTORY_EXAMPLE, _VIEW)

    notification: NotificationView
    content: NotificationContent
    timeline: list[AuditEntry]


class OutcomeCounts(_Camel):
    model_config = _VIEW

    sent: int
    failed: int


class ConsoleSummary(_Camel):
    """The console's header: the service's outbox lag and queue depths, the project's outcomes."""

    model_config = _example(
        {
            "outboxLagSeconds": 0.0,
            "queueDepths": {"email": 0, "push": 0, "sms": 0, "webhook": 0, "inapp": 0},
            "lastMinute": {"sent": 12, "failed": 1},
        },
        _VIEW,
    )

    outbox_lag_seconds: float
    queue_depths: dict[str, int | None] = Field(
        description="Messages waiting per channel queue; null when Redis did not answer"
    )
    last_minute: OutcomeCounts


# --- recipients: profiles, preferences, categories, suppressions -----------------------------


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _iana_time_zone(value: str) -> str:
    # Membership in the tz database's names, never a path: ZoneInfo() would open files.
    if value not in _time_zones():
        raise PydanticCustomError("timezone", "not an IANA time zone name, e.g. Europe/Lisbon")
    return value


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_iana_time_zone)]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
MAX_BULK_USERS = 1000


class QuietHours(_Camel):
    """A daily window in the profile's ``timezone`` (UTC without one); may cross midnight."""

    model_config = ConfigDict(
        alias_generator=to_camel, serialize_by_alias=True, validate_by_name=True, extra="forbid"
    )

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise PydanticCustomError("quiet_hours_empty", "start and end must differ")
        return self


class UserProfileWrite(_Camel):
    """``PUT /users/{userId}`` (replace: absent fields are cleared) and ``PATCH`` (merge: absent
    fields are kept, ``null`` clears one, ``data`` is merged key by key)."""

    model_config = _example(
        {
            "email": "ana@example.com",
            "phone": "+351912345678",
            "name": "Ana Lima",
            "locale": "pt-PT",
            "timezone": "Europe/Lisbon",
            "quietHours": {"start": "22:00", "end": "08:00"},
            "data": {"plan": "pro"},
        },
        _Camel.model_config,
    )

    email: Email | None = None
    phone: E164Phone | None = None
    name: Annotated[HeaderSafeText, StringConstraints(max_length=200)] | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    quiet_hours: QuietHours | None = None
    data: dict[str, Any] | None = None

    @field_validator("data")
    @classmethod
    def _data_storable(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        if data is not None:
            _storable_json(data)
        return data


class UserBulkItem(UserProfileWrite):
    """One user of ``POST /users/bulk``: identified (created, or merged as by ``PATCH``)."""

    user_id: UserId


class UserBulkRequest(_Camel):
    model_config = _example(
        {
            "users": [
                {"userId": "ana", "email": "ana@example.com"},
                {"userId": "rui", "phone": "+351912345679"},
            ]
        },
        _Camel.model_config,
    )

    users: list[UserBulkItem] = Field(min_length=1, max_length=MAX_BULK_USERS)


class UserBulkEnvelope(_Camel):
    """The bulk body's outer shape; each user is then validated on its own, so one bad item is
    refused alone (207)."""

    users: list[Any] = Field(min_length=1, max_length=MAX_BULK_USERS)


class _View(_Camel):
    model_config = ConfigDict(
        alias_generator=to_camel, serialize_by_alias=True, validate_by_name=True
    )


class UserProfileView(_View):
    model_config = _example(
        {
            "userId": "ana",
            "email": "ana@example.com",
            "phone": "+351912345678",
            "name": "Ana Lima",
            "locale": "pt-PT",
            "timezone": "Europe/Lisbon",
            "quietHours": {"start": "22:00", "end": "08:00"},
            "data": {"plan": "pro"},
            "createdAt": "2026-12-04T10:00:00Z",
            "updatedAt": "2026-12-04T10:00:00Z",
        },
        _View.model_config,
    )

    user_id: str
    email: str | None
    phone: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    quiet_hours: QuietHours | None
    data: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class UserBulkResult(_View):
    index: int
    user_id: str | None
    status: int = Field(description="201 created, 200 merged into an existing profile, 422")
    error: ErrorDetail | None = None


class UserBulkResponse(_View):
    model_config = _example(
        {
            "results": [
                {"index": 0, "userId": "ana", "status": 201, "error": None},
                {"index": 1, "userId": "rui", "status": 200, "error": None},
            ]
        },
        _View.model_config,
    )

    results: list[UserBulkResult]


class ErasureResult(_View):
    """What ``DELETE /users/{userId}`` removed or redacted."""

    model_config = _example(
        {
            "userId": "ana",
            "profiles": 1,
            "preferences": 1,
            "devices": 2,
            "inboxItems": 5,
            "notificationsRedacted": 12,
            "deliveriesCancelled": 0,
            "suppressionsKept": 0,
        },
        _View.model_config,
    )

    user_id: str
    profiles: int
    preferences: int
    devices: int
    inbox_items: int
    notifications_redacted: int
    deliveries_cancelled: int
    suppressions_kept: int = Field(description="entries kept by their hash, address removed")


class PreferencesWrite(_Camel):
    """``PUT /users/{userId}/preferences``: replaces the user's preferences."""

    model_config = _example(
        {
            "channels": {"SMS": False},
            "categories": {"marketing.newsletter": {"EMAIL": False}, "digest": False},
        },
        _Camel.model_config,
    )

    channels: dict[Channel, bool] = {}
    categories: dict[CategoryKey, bool | dict[Channel, bool]] = {}


class PreferencesView(_View):
    """The effective preferences: every channel, and every declared or mentioned category with
    every channel, as the worker would judge a MARKETING notification of it."""

    model_config = _example(
        {
            "channels": {
                "EMAIL": True,
                "SMS": False,
                "PUSH": True,
                "WEBHOOK": True,
                "IN_APP": True,
            },
            "categories": {
                "digest": {
                    "EMAIL": False,
                    "SMS": False,
                    "PUSH": False,
                    "WEBHOOK": False,
                    "IN_APP": False,
                }
            },
        },
        _View.model_config,
    )

    channels: dict[Channel, bool]
    categories: dict[str, dict[Channel, bool]]


class CategoryPath(BaseModel):
    key: CategoryKey


class CategoryWrite(_Camel):
    model_config = _example(
        {"required": False, "defaultChannels": ["EMAIL"], "description": "The monthly newsletter"},
        _Camel.model_config,
    )

    required: bool = False
    default_channels: list[Channel] = Field(default_factory=lambda: list(Channel))
    description: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("default_channels")
    @classmethod
    def _unique(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError("each channel may appear only once")
        return channels


class CategoryView(_View):
    model_config = _example(
        {
            "key": "marketing.newsletter",
            "required": False,
            "defaultChannels": ["EMAIL"],
            "description": "The monthly newsletter",
            "createdAt": "2026-12-04T10:00:00Z",
            "updatedAt": "2026-12-04T10:00:00Z",
        },
        _View.model_config,
    )

    key: str
    required: bool
    default_channels: list[Channel]
    description: str | None
    created_at: datetime
    updated_at: datetime


class CategoryList(_View):
    model_config = _example(
        {
            "items": [
                {
                    "key": "marketing.newsletter",
                    "required": False,
                    "defaultChannels": ["EMAIL"],
                    "description": "The monthly newsletter",
                    "createdAt": "2026-12-04T10:00:00Z",
                    "updatedAt": "2026-12-04T10:00:00Z",
                }
            ]
        },
        _View.model_config,
    )

    items: list[CategoryView]


SuppressionChannel = Literal["EMAIL", "SMS"]


class SuppressionPath(BaseModel):
    """``/suppressions/{channel}/{address}``: an e-mail address for EMAIL, E.164 for SMS."""

    channel: SuppressionChannel
    address: Annotated[str, StringConstraints(min_length=1, max_length=254)]

    @field_validator("address")
    @classmethod
    def _address_of_channel(cls, address: str, info: ValidationInfo) -> str:
        channel = info.data.get("channel")
        if channel == "EMAIL":
            return _plain_address(address)
        if channel == "SMS" and not _E164.fullmatch(address):
            raise PydanticCustomError("e164", "an SMS address is an E.164 number: +15551234567")
        return address


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class SuppressionWrite(_Camel):
    model_config = _example({"reason": "manual"}, _Camel.model_config)

    reason: SuppressionReason = SuppressionReason.MANUAL


class SuppressionQuery(_Camel):
    model_config = ConfigDict(
        alias_generator=None, extra="forbid", validate_by_alias=True, validate_by_name=True
    )

    channel: SuppressionChannel | None = None
    reason: SuppressionReason | None = None
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: int = Field(default=50, ge=1, le=100)


class SuppressionView(_View):
    model_config = _example(
        {
            "channel": "EMAIL",
            "address": "gone@example.com",
            "reason": "bounce",
            "deliveryId": "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b",
            "createdAt": "2026-12-04T10:00:00Z",
        },
        _View.model_config,
    )

    channel: SuppressionChannel
    address: str | None = Field(description="Normalised; null once its user was erased")
    reason: SuppressionReason
    delivery_id: uuid.UUID | None = Field(description="The delivery whose answer added it")
    created_at: datetime


class SuppressionPage(_View):
    model_config = _example(
        {
            "items": [
                {
                    "channel": "EMAIL",
                    "address": "gone@example.com",
                    "reason": "bounce",
                    "deliveryId": "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b",
                    "createdAt": "2026-12-04T10:00:00Z",
                }
            ],
            "nextCursor": None,
        },
        _View.model_config,
    )

    items: list[SuppressionView]
    next_cursor: str | None
