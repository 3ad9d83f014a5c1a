"""The service's vocabulary: channels, priorities, types and delivery statuses."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "EMAIL"
    PUSH = "PUSH"
    SMS = "SMS"
    WEBHOOK = "WEBHOOK"
    IN_APP = "IN_APP"

    @property
    def queue(self) -> str:
        """The Celery queue (and Redis list) that carries this channel's deliveries."""
        return self.value.lower().replace("_", "")


class Priority(StrEnum):
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"

    @property
    def rank(self) -> int:
        """Outbox ordering and Celery message priority: on Redis, 0 is served first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


class NotificationType(StrEnum):
    TRANSACTIONAL = "TRANSACTIONAL"
    MARKETING = "MARKETING"
    SYSTEM = "SYSTEM"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    RETRYING = "RETRYING"
    SENT = "SENT"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    # Not sent on purpose, decided at claim: preference_opt_out, suppressed, quiet_hours_expired.
    SKIPPED = "SKIPPED"


TERMINAL_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.EXPIRED,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.SKIPPED,
    }
)


class NotificationStatus(StrEnum):
    """A notification's status, derived from its deliveries (see app/store/notifications.py)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SENT = "SENT"
    PARTIALLY_SENT = "PARTIALLY_SENT"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"  # every delivery was skipped (consent)


# A category key (``category`` of a notification, ``PUT /categories/{key}``).
CATEGORY_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

# Channels whose deliveries go to an address: the ones a profile supplies, the suppression list
# holds and quiet hours apply to (with PUSH).
ADDRESS_CHANNELS = (Channel.EMAIL, Channel.SMS)


class SuppressionReason(StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    INVALID_RECIPIENT = "invalid_recipient"
    MANUAL = "manual"
    UNSUBSCRIBED = "unsubscribed"


class PushPlatform(StrEnum):
    """Where a registered device's token is valid: Firebase Cloud Messaging or Apple's APNs."""

    FCM = "fcm"
    APNS = "apns"


class DeviceDeliveryStatus(StrEnum):
    """The result of one PUSH delivery on one device (``delivery_device.status``)."""

    PENDING = "PENDING"
    RETRYING = "RETRYING"
    SENT = "SENT"
    INVALID = "INVALID"
    FAILED = "FAILED"
