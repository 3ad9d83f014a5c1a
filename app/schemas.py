"""Request and response schemas: validation, and the source of the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from app.domain import Channel, DeliveryStatus, NotificationStatus, NotificationType, Priority

# No CR or LF: these values end up in email headers.
HeaderSafeText = Annotated[str, StringConstraints(pattern=r"^[^\r\n]*$")]
Email = Annotated[
    str, StringConstraints(max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
]
E164Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w.:@-]+$")]
DeviceToken = Annotated[str, StringConstraints(min_length=1, max_length=4096)]

MAX_DEVICE_TOKENS = 100


class _Camel(BaseModel):
    """Fields are camelCase on the wire; unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid"
    )


class NotificationCreate(_Camel):
    type: NotificationType = NotificationType.TRANSACTIONAL
    priority: Priority = Priority.NORMAL
    channels: list[Channel] = Field(min_length=1, max_length=len(Channel))
    recipient_email: Email | None = None
    recipient_phone: E164Phone | None = None
    user_id: UserId | None = None
    device_tokens: list[DeviceToken] | None = Field(
        default=None, min_length=1, max_length=MAX_DEVICE_TOKENS
    )
    webhook_url: AnyHttpUrl | None = Field(default=None)
    subject: Annotated[HeaderSafeText, StringConstraints(max_length=998)] | None = None
    body: str = Field(min_length=1, max_length=50_000)
    html_body: str | None = Field(default=None, max_length=200_000)
    data: dict[str, Any] | None = None
    send_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError("each channel may appear only once")
        return channels

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_length(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is not None and len(str(url)) > 2048:
            raise ValueError("URL longer than 2048 characters")
        return url


# The request fields each channel delivers to (camelCase names, as the caller wrote them).
# A channel is satisfied when every group has at least one field present.
CHANNEL_REQUIREMENTS: dict[Channel, tuple[tuple[str, ...], ...]] = {
    Channel.EMAIL: (("recipientEmail",), ("subject",)),
    Channel.PUSH: (("userId", "deviceTokens"),),
    Channel.SMS: (("recipientPhone",),),
    Channel.WEBHOOK: (("webhookUrl",),),
    Channel.IN_APP: (("userId",),),
}


def missing_recipients(request: NotificationCreate) -> list[FieldError]:
    """Field errors for every channel whose recipient fields the request left out."""
    given = request.model_dump(by_alias=True, exclude_none=True)
    errors = []
    for channel in request.channels:
        for group in CHANNEL_REQUIREMENTS[channel]:
            if not any(name in given for name in group):
                errors.append(
                    FieldError(
                        field=group[0],
                        rule="required_for_channel",
                        message=f"{' or '.join(group)} is required for channel {channel.value}",
                    )
                )
    return errors


class ListQuery(_Camel):
    model_config = ConfigDict(
        alias_generator=None, extra="forbid", validate_by_alias=True, validate_by_name=True
    )

    status: NotificationStatus | None = None
    channel: Channel | None = None
    type: NotificationType | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: int = Field(default=50, ge=1, le=100)


class NotificationId(BaseModel):
    id: uuid.UUID


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


class NotificationView(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    id: uuid.UUID
    type: NotificationType
    priority: Priority
    status: NotificationStatus
    send_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    deliveries: list[DeliveryView]


class NotificationPage(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    items: list[NotificationView]
    next_cursor: str | None


class CancelResult(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    cancelled: int
    notification: NotificationView


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
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

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
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    items: list[InboxItemView]
    next_cursor: str | None
    unread_count: int


class InboxReadResult(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    marked: int
    unread_count: int


class WsToken(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)

    token: str
    expires_at: datetime
    url: str = Field(description="The WebSocket path; send the token in the first message")


class HealthCheck(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class FieldError(BaseModel):
    field: str
    rule: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorBody(BaseModel):
    error: ErrorDetail
