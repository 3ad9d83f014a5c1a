"""The one provider interface every channel implements, and its closed set of outcomes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.core.domain import Channel, NotificationType, Priority

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One delivery, with what its channel needs to send it."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    project_id: str  # the submitting key's: user ids, devices and inboxes are per project
    channel: Channel
    attempt: int
    type: NotificationType
    priority: Priority
    created_at: datetime
    body: str
    subject: str | None = None
    html_body: str | None = None
    recipient_email: str | None = None
    recipient_phone: str | None = None
    user_id: str | None = None
    device_tokens: list[str] | None = None
    webhook_url: str | None = None
    data: dict[str, Any] | None = None
    category: str | None = None
    # Whether the user may opt out of it (app/store/deliveries.py): an email then carries a
    # one-click unsubscribe link.
    opt_outable: bool = False
    # The suppression-list key of the address, for an email one may opt out of that names no
    # user: its unsubscribe link suppresses the address (app/core/unsubscribe.py).
    address_key: bytes | None = field(default=None, repr=False)
    # The HMAC key of the API key that submitted the notification; signs webhook deliveries.
    webhook_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Message:
        return cls(
            delivery_id=row.id,
            notification_id=row.notification_id,
            project_id=row.project_id,
            channel=Channel(row.channel),
            attempt=row.attempts,
            type=NotificationType(row.type),
            priority=Priority(row.priority),
            created_at=row.created_at,
            body=row.body,
            subject=row.subject,
            html_body=row.html_body,
            recipient_email=row.recipient_email,
            recipient_phone=row.recipient_phone,
            user_id=row.user_id,
            device_tokens=row.device_tokens,
            webhook_url=row.webhook_url,
            data=row.data,
            category=row.category,
            opt_outable=bool(row.opt_outable),
            address_key=None if row.address_key is None else bytes(row.address_key),
            webhook_secret=row.webhook_secret,
        )


@dataclass(frozen=True)
class Sent:
    provider_message_id: str | None = None


@dataclass(frozen=True)
class Retryable:
    """A transient failure: try again later (no sooner than ``retry_after`` seconds, if given)."""

    code: str
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Permanent:
    """Trying again would fail the same way."""

    code: str
    reason: str


@dataclass(frozen=True)
class InvalidRecipient:
    """The address or token is dead: fail, and never use it again."""

    code: str
    reason: str


Outcome = Sent | Retryable | Permanent | InvalidRecipient


class Provider(Protocol):
    """Sends messages of one channel: one outcome per message, in order, each yielded as soon
    as it is known and before the next message is sent (the worker records it in between, so
    a crash re-sends at most the message in flight). Never raises for a delivery problem: an
    exception while sending one message is that message's outcome (:func:`send_each`)."""

    def send(self, messages: Sequence[Message]) -> Iterable[Outcome]: ...


def send_each(
    messages: Iterable[Message], send_one: Callable[[Message], Outcome]
) -> Iterator[Outcome]:
    """``send_one(message)`` for each message in turn, yielding each outcome as it is known.

    What every provider's loop is made of: an exception while sending one message becomes that
    message's outcome, so the others (some maybe already accepted) are neither failed nor sent
    again. A ``ValueError`` says the message itself cannot be sent as it is (a header the mail
    library refuses, text a codec cannot encode): trying again would fail the same way. Any
    other exception is a surprise of the moment, retried.
    """
    for message in messages:
        try:
            outcome = send_one(message)
        except ValueError as exc:
            log.warning("delivery %s refused: %s: %s", message.delivery_id, type(exc).__name__, exc)
            outcome = Permanent("message_refused", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # The traceback goes to the log; the recorded reason names only the exception's
            # type, since its text may carry an address or a URL's token.
            log.exception("sending delivery %s raised", message.delivery_id)
            outcome = Retryable("provider_error", f"provider raised {type(exc).__name__}")
        yield outcome
