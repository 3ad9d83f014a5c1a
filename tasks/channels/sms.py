"""SMS through a Twilio-compatible Messages API over HTTPS.

``POST {SMS_API_BASE_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json``, form-encoded
``To``, ``From`` and ``Body``, HTTP basic auth ``SMS_ACCOUNT_SID:SMS_AUTH_TOKEN``. One
``httpx.Client`` per provider keeps connections to the gateway alive across deliveries; it is
thread-safe, so the worker's threads share it.

Outcome classification (also in the README). ``<code>`` is the Twilio error code from the
response body, or ``http_<status>`` when the body carries none:

| gateway answer                                    | outcome                | code             |
| ------------------------------------------------- | ---------------------- | ---------------- |
| 2xx (201 with the message ``sid``)                | sent (with the sid)    |                  |
| 400 with 21211 / 21614 (invalid or non-mobile To) | invalid recipient      | ``sms_21211`` …  |
| 400 with 21610 (recipient unsubscribed, STOP)     | invalid recipient      | ``sms_21610``    |
| other 3xx / 4xx (400, 401, 403, 404, …)           | permanent              | ``sms_<code>``   |
| 429                                               | retryable, Retry-After | ``sms_<code>``   |
| 5xx                                               | retryable              | ``sms_<code>``   |
| connect or read timeout                           | retryable              | ``sms_timeout``  |
| connection refused, reset, TLS or DNS failure     | retryable              | ``sms_connection`` |

A retryable outcome with a ``Retry-After`` is retried no sooner than the gateway asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any, Self

import httpx

from app.core.process import ProcessContext
from app.core.settings import Settings
from app.core.sms import sms_segments
from tasks.channels.base import (
    InvalidRecipient,
    Message,
    Outcome,
    Permanent,
    Retryable,
    Sent,
    send_each,
)
from tasks.channels.http import retry_after_seconds

log = logging.getLogger(__name__)

USER_AGENT = "notification-service/sms"

# Twilio error codes that say the recipient can never receive from us.
INVALID_RECIPIENT_CODES = frozenset({21211, 21614, 21610})

_PHONE_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}(\d{2})")


def redact_numbers(text: str) -> str:
    """``text`` with every phone-number-like run cut to its last two digits."""
    return _PHONE_NUMBER.sub(lambda m: f"+…{m.group(1)}", text)


def _error_of(response: httpx.Response) -> tuple[int | None, str]:
    """Twilio's error code and message from an error response, if the body has them."""
    try:
        body: Any = response.json()
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    message = body.get("message")
    return (
        code if isinstance(code, int) else None,
        redact_numbers(message)[:300] if isinstance(message, str) else "",
    )


def classify(response: httpx.Response) -> Outcome:
    """The outcome of one answer of the Messages API."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            sid = response.json().get("sid")
        except (ValueError, AttributeError):
            sid = None
        return Sent(provider_message_id=sid if isinstance(sid, str) else None)
    error_code, message = _error_of(response)
    code = f"sms_{error_code}" if error_code is not None else f"sms_http_{status}"
    reason = f"SMS API answered {status}" + (
        f", error {error_code}: {message}" if error_code is not None else ""
    )
    if status == 400 and error_code in INVALID_RECIPIENT_CODES:
        return InvalidRecipient(code, reason)
    if status == 429:
        return Retryable(code, reason, retry_after_seconds(response.headers.get("Retry-After")))
    if status >= 500:
        return Retryable(code, reason)
    return Permanent(code, reason)


class TwilioSmsProvider:
    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls(process.settings)

    def __init__(self, settings: Settings) -> None:
        base = settings.sms_api_base_url.rstrip("/")
        self._url = f"{base}/2010-04-01/Accounts/{settings.sms_account_sid}/Messages.json"
        self._from = settings.sms_from
        self._client = httpx.Client(
            auth=(settings.sms_account_sid, settings.sms_auth_token),
            timeout=httpx.Timeout(settings.sms_timeout_seconds),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: Message) -> Outcome:
        segments = sms_segments(message.body)
        log.info(
            "sending SMS delivery %s: %d segment(s), %s",
            message.delivery_id,
            segments.count,
            segments.encoding,
        )
        form = {"To": message.recipient_phone or "", "From": self._from, "Body": message.body}
        try:
            response = self._client.post(self._url, data=form)
        except httpx.TimeoutException as exc:
            return Retryable("sms_timeout", f"SMS API timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Retryable("sms_connection", f"SMS API unreachable: {exc!r}"[:500])
        return classify(response)
