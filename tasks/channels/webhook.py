"""WEBHOOK: a signed JSON POST to the caller's ``webhookUrl``.

The body is the notification as JSON; ``X-Signature: sha256=<hex>`` is HMAC-SHA256 under the
submitting API key's webhook secret of ``f"{X-Timestamp}.{raw body}"``, so a receiver can prove
the request is ours and reject replays of old ones (README: "Verifying webhook signatures").

Connections go only to addresses the SSRF guard permits (``tasks/channels/ssrf.py``); redirects
are not followed, because a redirect could point anywhere. One ``httpx.Client`` per provider,
shared by the worker's threads, keeps connections to receivers alive.

Outcome classification (also in the README):

| receiver answer                                 | outcome    | code                      |
| ----------------------------------------------- | ---------- | ------------------------- |
| 2xx                                             | sent       |                           |
| 429 (retried no sooner than ``Retry-After``)    | retryable  | ``webhook_http_429``      |
| 5xx                                             | retryable  | ``webhook_http_<status>`` |
| connect or read timeout                         | retryable  | ``webhook_timeout``       |
| connection refused or reset, TLS or DNS failure | retryable  | ``webhook_connection``    |
| 3xx (not followed) and every other 4xx          | permanent  | ``webhook_http_<status>`` |
| host resolves only to forbidden addresses       | permanent  | ``ssrf_blocked``          |
| URL not http(s) or malformed                    | permanent  | ``webhook_invalid_url``   |
| key issued before webhook signing existed       | permanent  | ``webhook_no_secret``     |
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Self

import httpx
import orjson

from app.core.process import ProcessContext
from app.core.settings import Settings
from tasks.channels.base import Message, Outcome, Permanent, Retryable, Sent, send_each
from tasks.channels.http import retry_after_seconds
from tasks.channels.ssrf import BlockedAddress, GuardedTransport

log = logging.getLogger(__name__)

USER_AGENT = "notification-service-webhook/1"
# Enough of a receiver's answer to explain a failure and to let a small 2xx body be read to the
# end, so the connection can be reused; a receiver cannot make us read more.
MAX_RESPONSE_BYTES = 64 * 1024


def payload(message: Message) -> bytes:
    """The JSON body POSTed for ``message``, exactly as signed."""
    return orjson.dumps(
        {
            "id": str(message.notification_id),
            "deliveryId": str(message.delivery_id),
            "type": message.type.value,
            "priority": message.priority.value,
            "subject": message.subject,
            "body": message.body,
            "data": message.data,
            "createdAt": message.created_at.isoformat(),
        }
    )


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` and the hex HMAC of ``{timestamp}.{body}``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def origin(url: str) -> str:
    """Scheme, host and port of ``url``: what may be logged. Paths and queries often carry
    the receiver's own secret tokens."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def classify(status: int, head: bytes, retry_after: str | None) -> Outcome:
    """The outcome of a receiver's answer (``head``: the start of its body)."""
    if 200 <= status < 300:
        return Sent()
    code = f"webhook_http_{status}"
    detail = head[:200].decode(errors="replace").strip()
    reason = f"receiver answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return Retryable(code, reason, retry_after_seconds(retry_after))
    if status >= 500:
        return Retryable(code, reason)
    if 300 <= status < 400:
        return Permanent(code, f"receiver answered {status}; redirects are not followed")
    return Permanent(code, reason)


class HttpWebhookProvider:
    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls(process.settings)

    def __init__(self, settings: Settings) -> None:
        self._client = httpx.Client(
            transport=GuardedTransport(settings.allowed_webhook_networks()),
            timeout=httpx.Timeout(
                settings.webhook_read_timeout_seconds,
                connect=settings.webhook_connect_timeout_seconds,
            ),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            trust_env=False,
        )

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: Message) -> Outcome:
        url = message.webhook_url or ""
        if not message.webhook_secret:
            return Permanent(
                "webhook_no_secret",
                "the API key that submitted this notification has no webhook secret;"
                " issue a new key with create-api-key",
            )
        body = payload(message)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Timestamp": timestamp,
            "X-Signature": signature(message.webhook_secret, timestamp, body),
            "X-Notification-Id": str(message.notification_id),
        }
        outcome = self._post(url, body, headers)
        log.info(
            "webhook delivery %s to %s: %s",
            message.delivery_id,
            origin(url),
            type(outcome).__name__ + (f" {outcome.code}" if not isinstance(outcome, Sent) else ""),
        )
        return outcome

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            with self._client.stream("POST", url, content=body, headers=headers) as response:
                head = b""
                try:
                    for chunk in response.iter_bytes():
                        head += chunk
                        if len(head) >= MAX_RESPONSE_BYTES:
                            break
                except (httpx.DecodingError, httpx.TransportError):
                    # The status line is the receiver's answer; its body only explains a
                    # failure, so a body that cannot be read must not turn an accepted
                    # delivery into a retried (and duplicated) one.
                    pass
                return classify(response.status_code, head, response.headers.get("Retry-After"))
        except BlockedAddress as exc:
            return Permanent("ssrf_blocked", str(exc))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Permanent("webhook_invalid_url", f"webhook URL refused: {exc}"[:300])
        except httpx.TimeoutException as exc:
            return Retryable("webhook_timeout", f"receiver timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Retryable("webhook_connection", f"receiver unreachable: {exc!r}"[:500])
