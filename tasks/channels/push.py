"""PUSH: fan a delivery out to its devices, send each through its platform, record each result.

A PUSH delivery addressed by ``userId`` goes to every active device of that user; one with
``deviceTokens`` goes to exactly those registered devices. The devices are fixed on the first
attempt (one ``delivery_device`` row each) and every attempt sends only to the rows still
PENDING or RETRYING, so a retry never repeats a device that already got the notification or
whose token is dead. The delivery's outcome summarises its devices:

- any device retryable (and attempts left)          → retryable (the longest Retry-After wins)
- otherwise at least one device sent                → sent
- otherwise every device invalid                    → invalid recipient
- otherwise (no device, or a permanent failure)     → permanent

A device whose token the platform reports dead is deactivated and never tried again, by this
delivery or any later one. The worker (tasks/deliver.py) sees only the summary.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from sqlalchemy import Connection, Engine

from app.core.db import transaction
from app.core.domain import DeviceDeliveryStatus, PushPlatform
from app.core.process import ProcessContext
from app.core.settings import Settings
from app.store import devices as device_store
from app.store.deliveries import (
    MAX_CODE_CHARS,
    MAX_ERROR_CHARS,
    MAX_PROVIDER_ID_CHARS,
    storable,
)
from app.store.devices import TOKEN_PREFIX_LENGTH
from tasks.channels.base import (
    InvalidRecipient,
    Message,
    Outcome,
    Permanent,
    Retryable,
    Sent,
    send_each,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    """One device a PUSH delivery goes to."""

    device_id: uuid.UUID
    platform: PushPlatform
    token: str
    app_id: str
    locale: str | None

    @property
    def token_prefix(self) -> str:
        return self.token[:TOKEN_PREFIX_LENGTH]


class PlatformSender(Protocol):
    """Sends one message to devices of one platform: one outcome per device, in order. Never
    raises for a delivery problem; outcome reasons never contain a whole token."""

    def send(self, message: Message, devices: Sequence[Device]) -> list[Outcome]: ...


_OPEN = {DeviceDeliveryStatus.PENDING, DeviceDeliveryStatus.RETRYING}


@dataclass(frozen=True)
class DeviceResult:
    """What one attempt decided for one device, ready to be recorded."""

    row_id: int
    status: DeviceDeliveryStatus
    tried: bool
    error_code: str | None = None
    error: str | None = None
    provider_message_id: str | None = None
    retry_after: float | None = None
    deactivate: uuid.UUID | None = None
    gave_up: bool = False  # retryable, but this was the delivery's last attempt


class PushProvider:
    """The PUSH channel's provider: device fan-out and per-device results over platform senders.

    ``senders`` has one sender per configured platform; a device of a platform without one
    fails permanently (``<platform>:not_configured``)."""

    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls(process.settings, process.engine, push_senders(process.settings))

    def __init__(
        self, settings: Settings, engine: Engine, senders: Mapping[PushPlatform, PlatformSender]
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._senders = dict(senders)

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        # A delivery that raises keeps its devices' rows open, so its retry sends exactly what
        # this attempt did not.
        return send_each(messages, self._deliver)

    def _deliver(self, message: Message) -> Outcome:
        with transaction(self._engine) as conn:
            rows = device_store.delivery_targets(
                conn,
                message.project_id,
                message.delivery_id,
                message.user_id,
                message.device_tokens,
            )
        final_attempt = message.attempt >= self._settings.delivery_max_attempts
        results: list[DeviceResult] = []
        to_send: dict[PushPlatform, list[tuple[int, Device]]] = {}
        for row in rows:
            if DeviceDeliveryStatus(row.status) not in _OPEN:
                continue
            if row.device_id is None:
                results.append(
                    _result(row.id, Permanent("device_removed", "removed from the registry"))
                )
            elif not row.active:
                results.append(
                    _result(row.id, InvalidRecipient("device_inactive", "device is deactivated"))
                )
            else:
                device = Device(
                    row.device_id, PushPlatform(row.platform), row.token, row.app_id, row.locale
                )
                to_send.setdefault(device.platform, []).append((row.id, device))
        for platform, batch in to_send.items():
            for (row_id, device), outcome in zip(
                batch, self._send_platform(platform, message, [d for _, d in batch]), strict=True
            ):
                results.append(
                    _result(row_id, outcome, tried=True, final_attempt=final_attempt, device=device)
                )
        if results:
            with transaction(self._engine) as conn:
                _record(conn, results)
        for result in results:
            if result.deactivate:
                log.info(
                    "device %s deactivated: %s (delivery %s)",
                    result.deactivate,
                    result.error_code,
                    message.delivery_id,
                )
        return _summarise(message, rows, results)

    def _send_platform(
        self, platform: PushPlatform, message: Message, devices: list[Device]
    ) -> list[Outcome]:
        sender = self._senders.get(platform)
        if sender is None:
            reason = f"no {platform.value} credentials configured on this service"
            return [Permanent(f"{platform.value}:not_configured", reason)] * len(devices)
        try:
            return sender.send(message, devices)
        except Exception as exc:
            log.exception("%s sender raised for delivery %s", platform.value, message.delivery_id)
            return [Retryable(f"{platform.value}:error", type(exc).__name__)] * len(devices)


def _result(
    row_id: int,
    outcome: Outcome,
    *,
    tried: bool = False,
    final_attempt: bool = False,
    device: Device | None = None,
) -> DeviceResult:
    match outcome:
        case Sent(provider_message_id=pid):
            return DeviceResult(row_id, DeviceDeliveryStatus.SENT, tried, provider_message_id=pid)
        case Retryable(code=code, reason=reason, retry_after=retry_after):
            if final_attempt:
                return DeviceResult(
                    row_id, DeviceDeliveryStatus.FAILED, tried, code, reason, gave_up=True
                )
            return DeviceResult(
                row_id, DeviceDeliveryStatus.RETRYING, tried, code, reason, retry_after=retry_after
            )
        case InvalidRecipient(code=code, reason=reason):
            return DeviceResult(
                row_id,
                DeviceDeliveryStatus.INVALID,
                tried,
                code,
                reason,
                deactivate=device.device_id if device else None,
            )
        case Permanent(code=code, reason=reason):
            return DeviceResult(row_id, DeviceDeliveryStatus.FAILED, tried, code, reason)
    raise TypeError(f"not an outcome: {outcome!r}")


def _record(conn: Connection, results: Sequence[DeviceResult]) -> None:
    # What FCM and APNs answered is made storable as a delivery's outcome is: a NUL in one
    # device's error must not fail the record of devices already sent (they would be sent again).
    device_store.record_results(
        conn,
        row_ids=[r.row_id for r in results],
        statuses=[r.status.value for r in results],
        tried=[int(r.tried) for r in results],
        error_codes=[storable(r.error_code, MAX_CODE_CHARS) for r in results],
        errors=[storable(r.error, MAX_ERROR_CHARS) for r in results],
        provider_message_ids=[
            storable(r.provider_message_id, MAX_PROVIDER_ID_CHARS) for r in results
        ],
    )
    dead = [r for r in results if r.deactivate]
    if dead:
        device_store.deactivate(
            conn, [r.deactivate for r in dead if r.deactivate], [r.error_code for r in dead]
        )


def _summarise(message: Message, rows: Sequence[Any], results: Sequence[DeviceResult]) -> Outcome:
    """The delivery's outcome from every device's latest status (earlier attempts included)."""
    latest: dict[int, tuple[DeviceDeliveryStatus, str | None, str | None, str | None]] = {
        row.id: (
            DeviceDeliveryStatus(row.status),
            row.error_code,
            row.last_error,
            row.provider_message_id,
        )
        for row in rows
    }
    for r in results:
        latest[r.row_id] = (r.status, r.error_code, r.error, r.provider_message_id)
    if not latest:
        whom = "these device tokens" if message.device_tokens else f"user {message.user_id}"
        return Permanent("push_no_devices", f"no active registered device for {whom}")
    total = len(latest)
    statuses = [status for status, *_ in latest.values()]
    retrying = [r for r in results if r.status is DeviceDeliveryStatus.RETRYING]
    if retrying:
        first = retrying[0]
        waits = [r.retry_after for r in retrying if r.retry_after is not None]
        return Retryable(
            first.error_code or "push_retry",
            f"{len(retrying)} of {total} devices to retry; first: {first.error}",
            max(waits) if waits else None,
        )
    sent = [v for v in latest.values() if v[0] is DeviceDeliveryStatus.SENT]
    if sent:
        # One device: its id. Several: each device's id is in the delivery's devices[].
        return Sent(sent[0][3] if total == 1 else None)
    gave_up = [r for r in results if r.gave_up]
    if gave_up:
        # Still retryable as far as the worker knows: it records the final failure as such.
        return Retryable(gave_up[0].error_code or "push_retry", f"{gave_up[0].error}")
    failed = [v for v in latest.values() if v[0] is DeviceDeliveryStatus.FAILED]
    if failed:
        _, code, error, _ = failed[0]
        return Permanent(code or "push_failed", f"no device reached; first: {error}")
    _, code, error, _ = next(iter(latest.values()))
    assert all(s is DeviceDeliveryStatus.INVALID for s in statuses)
    return InvalidRecipient(code or "push_invalid", f"every device token is invalid; {error}")


class LogPushSender:
    """``PUSH_PROVIDER=log``: writes each device's push to the worker log instead of sending."""

    def send(self, message: Message, devices: Sequence[Device]) -> list[Outcome]:
        for device in devices:
            log.info(
                "delivered PUSH notification %s to %s device %s (token %s…, delivery %s)",
                message.notification_id,
                device.platform.value,
                device.device_id,
                device.token_prefix,
                message.delivery_id,
            )
        return [Sent(f"log-{uuid.uuid4()}") for _ in devices]


def push_senders(settings: Settings) -> dict[PushPlatform, PlatformSender]:
    """One sender per push platform: both log with ``PUSH_PROVIDER=log``; with ``live``, each
    platform whose credentials are configured."""
    if settings.push_provider == "log":
        return {platform: LogPushSender() for platform in PushPlatform}
    from tasks.channels import PUSH_SENDERS, resolve

    configured = {
        PushPlatform.FCM: settings.fcm_service_account_file,
        PushPlatform.APNS: settings.apns_key_file,
    }
    return {
        platform: resolve(PUSH_SENDERS[platform])(settings)
        for platform, credentials in configured.items()
        if credentials
    }
