"""PUSH to APNs devices over HTTP/2 with token-based authentication (httpx + PyJWT).

One ``httpx.AsyncClient`` per worker process, on its own event-loop thread, holds one HTTP/2
connection that every worker thread multiplexes its requests over. The provider token is an
ES256 JWT (``kid`` = key id, ``iss`` = team id, ``iat``) signed with the ``.p8`` key; it is reused
for every request and renewed once it is ``APNS_TOKEN_REFRESH_SECONDS`` old (APNs refuses tokens
older than an hour, and renewals more often than every 20 minutes), or at once when APNs answers
``ExpiredProviderToken``.

Outcome classification (also in the README); ``code`` is ``apns:`` + APNs's ``reason``:

| APNs answer                                          | outcome                      |
| ---------------------------------------------------- | ---------------------------- |
| 200 (``apns-id``)                                    | sent                         |
| 400 ``BadDeviceToken``                               | invalid (device deactivated) |
| 410 ``Unregistered`` (or ``ExpiredToken``)           | invalid (device deactivated) |
| 403 (``ExpiredProviderToken``, ``InvalidProviderToken``, …) | retryable             |
| 429 ``TooManyRequests``                              | retryable, after Retry-After |
| 500 ``InternalServerError``, 503 ``ServiceUnavailable``, ``Shutdown`` | retryable   |
| any other 4xx (``DeviceTokenNotForTopic``, ``BadTopic``, ``PayloadTooLarge``, …) | permanent |
| connect error, timeout, TLS or HTTP/2 error          | retryable (``apns:connection_error``) |
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt

from app.core.domain import Priority
from app.core.settings import Settings
from tasks.channels.base import InvalidRecipient, Message, Outcome, Permanent, Retryable, Sent
from tasks.channels.http import retry_after_seconds
from tasks.channels.push import Device

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# apns-id is derived from the delivery and the device, so every attempt of one push carries the
# same id (APNs echoes it back; it is what a support request to Apple would name).
_APNS_ID_NAMESPACE = uuid.UUID("2f1f6b8e-6a0e-4c55-9d7a-6d0c5d2a9b41")
_DEAD_TOKEN = {(400, "BadDeviceToken"), (410, "Unregistered"), (410, "ExpiredToken")}


class ProviderToken:
    """The JWT APNs authenticates this provider by: one per process, renewed by age."""

    def __init__(
        self, key_pem: bytes, key_id: str, team_id: str, refresh_seconds: float, clock: Clock
    ) -> None:
        self._key = key_pem
        self._key_id = key_id
        self._team_id = team_id
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued_at = 0.0

    def current(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._issued_at >= self._refresh_seconds:
                self._issued_at = now
                self._token = jwt.encode(
                    {"iss": self._team_id, "iat": int(now)},
                    self._key,
                    algorithm="ES256",
                    headers={"kid": self._key_id},
                )
            return self._token

    def expired(self, token: str) -> None:
        """APNs said ``token`` expired: the next request gets a new one (once, however many
        requests saw the old one fail)."""
        with self._lock:
            if self._token == token:
                self._token = None


class ApnsSender:
    """Sends to APNs devices. Key and connection are set up on first use, so a worker whose
    key file is missing reports a retryable failure per delivery instead of failing to start.

    The connection belongs to one event-loop thread: worker threads hand their sends to it and
    wait. httpcore's *sync* HTTP/2 is not safe to share between threads (stream ids are allocated
    apart from sending the HEADERS frame, and the HPACK encoder is unguarded), which broke the
    shared connection and made every stream on it retry, sending pushes twice; on one event loop
    the streams interleave only at awaits. A task's devices go out concurrently too."""

    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._token: ProviderToken | None = None

    def send(self, message: Message, devices: Sequence[Device]) -> list[Outcome]:
        try:
            loop, client, token = self._connect()
        except (OSError, ValueError, ssl.SSLError) as exc:
            failure = Retryable("apns:credentials", f"cannot load APNs key or CA: {exc!s}"[:300])
            return [failure] * len(devices)
        sends = [self._send_one(client, token, message, device) for device in devices]
        return asyncio.run_coroutine_threadsafe(_gather(sends), loop).result()

    def close(self) -> None:
        with self._lock:
            loop, client = self._loop, self._client
            self._loop = self._client = self._token = None
        if loop is not None and client is not None:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()
            loop.call_soon_threadsafe(loop.stop)

    def _connect(self) -> tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, ProviderToken]:
        with self._lock:
            if self._loop is None or self._client is None or self._token is None:
                s = self._settings
                key = Path(s.apns_key_file).read_bytes()
                token = ProviderToken(
                    key, s.apns_key_id, s.apns_team_id, s.apns_token_refresh_seconds, self._clock
                )
                token.current()  # a malformed key fails here, once, not on every request
                verify = ssl.create_default_context(cafile=s.apns_ca_file or None)
                client = httpx.AsyncClient(
                    base_url=s.apns_base_url,
                    http1=False,
                    http2=True,
                    verify=verify,
                    timeout=httpx.Timeout(s.apns_timeout_seconds),
                    # One connection: HTTP/2 multiplexes every thread's requests over it.
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                )
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="apns-http2", daemon=True).start()
                self._loop, self._client, self._token = loop, client, token
            return self._loop, self._client, self._token

    async def _send_one(
        self, client: httpx.AsyncClient, token: ProviderToken, message: Message, device: Device
    ) -> Outcome:
        jwt_token = token.current()
        apns_id = str(uuid.uuid5(_APNS_ID_NAMESPACE, f"{message.delivery_id}:{device.device_id}"))
        headers = {
            "authorization": f"bearer {jwt_token}",
            "apns-topic": device.app_id,
            "apns-push-type": "alert",
            "apns-priority": "5" if message.priority is Priority.LOW else "10",
            "apns-id": apns_id,
        }
        body = json.dumps(apns_payload(message), separators=(",", ":")).encode()
        try:
            response = await client.post(f"/3/device/{device.token}", headers=headers, content=body)
        except httpx.HTTPError as exc:
            # The exception names the failure, never the URL (which ends in the token).
            reason = f"APNs: {type(exc).__name__}: {exc!s}".replace(device.token, "…")
            return Retryable("apns:connection_error", reason[:300])
        except Exception as exc:
            # One device's surprise must not make the others (maybe already sent) retry.
            log.exception("APNs send to device %s failed", device.device_id)
            return Retryable("apns:error", type(exc).__name__)
        return self._classify(response, token, jwt_token, device)

    def _classify(
        self, response: httpx.Response, token: ProviderToken, jwt_token: str, device: Device
    ) -> Outcome:
        status = response.status_code
        if status == 200:
            return Sent(response.headers.get("apns-id"))
        try:
            reason = str(response.json().get("reason") or "")
        except ValueError:
            reason = ""
        code = f"apns:{reason or status}"
        text = f"APNs {status} {reason}".strip().replace(device.token, device.token_prefix)
        if (status, reason) in _DEAD_TOKEN:
            return InvalidRecipient(code, text)
        if status == 403:
            if reason == "ExpiredProviderToken":
                token.expired(jwt_token)
            return Retryable(code, text)
        if status == 429 or status >= 500:
            return Retryable(code, text, retry_after_seconds(response.headers.get("Retry-After")))
        return Permanent(code, text)


def apns_payload(message: Message) -> dict[str, Any]:
    """The notification as APNs wants it: ``aps.alert``, then the caller's data as custom keys."""
    alert = (
        {"title": message.subject, "body": message.body}
        if message.subject
        else {"body": message.body}
    )
    payload: dict[str, Any] = {
        key: value for key, value in (message.data or {}).items() if key != "aps"
    }
    payload["aps"] = {"alert": alert}
    payload["notificationId"] = str(message.notification_id)
    return payload


async def _gather(sends: Sequence[Coroutine[Any, Any, Outcome]]) -> list[Outcome]:
    return list(await asyncio.gather(*sends))
