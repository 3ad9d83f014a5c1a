"""PUSH to FCM devices through pyfcm 2.x (FCM HTTP v1, OAuth 2 service-account credentials).

pyfcm builds the message, obtains the access token (JWT-bearer grant at the service account's
``token_uri``) and keeps one requests session per thread over one shared connection pool. Two
of its behaviours would block a worker thread, so they are switched off here: it sleeps for
any Retry-After (unbounded) and its urllib3 adapter retries 502/503 itself with backoff. Both
become a scheduled retry of the device instead (a Retryable with ``retry_after``).

Outcome classification (also in the README); ``code`` is ``fcm:`` + FCM's error code:

| FCM answer                                         | outcome                      |
| -------------------------------------------------- | ---------------------------- |
| 200 ``{"name": ...}``                              | sent                         |
| 404 ``UNREGISTERED``                               | invalid (device deactivated) |
| 400 ``INVALID_ARGUMENT`` about ``message.token``   | invalid (device deactivated) |
| 400 ``INVALID_ARGUMENT`` about anything else       | permanent                    |
| 403 ``SENDER_ID_MISMATCH``, other 4xx              | permanent                    |
| 429 ``QUOTA_EXCEEDED``                             | retryable, after Retry-After |
| 500 ``INTERNAL``, 503 ``UNAVAILABLE``, other 5xx   | retryable, after Retry-After |
| 401 (``UNAUTHENTICATED``, ``THIRD_PARTY_AUTH_ERROR``), token exchange failed | retryable |
| connect error, timeout                             | retryable (``fcm:connection_error``) |
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account
from pyfcm import FCMNotification
from requests.adapters import HTTPAdapter

from app.core.domain import Priority
from app.core.settings import Settings
from tasks.channels.base import InvalidRecipient, Message, Outcome, Permanent, Retryable, Sent
from tasks.channels.http import retry_after_seconds
from tasks.channels.push import Device

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's transport, with our timeout instead of its 120 s default."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(  # type: ignore[no-untyped-call]
            url, method, body, headers, timeout=self._timeout, **kwargs
        )


class _NonBlockingFCM(FCMNotification):  # type: ignore[misc]
    """pyfcm without its blocking retries, with one access token shared by every thread."""

    def __init__(self, credentials: service_account.Credentials, settings: Settings) -> None:
        super().__init__(
            credentials=credentials,
            # max_retries=0: a 502/503 comes back to us at once instead of urllib3 retrying it.
            # One adapter for every thread's session: one pool, connections reused.
            adapter=HTTPAdapter(max_retries=0, pool_maxsize=max(4, settings.worker_concurrency)),
        )
        self.FCM_END_POINT_BASE = settings.fcm_base_url.rstrip("/") + "/v1/projects"
        self._token_lock = threading.Lock()
        self._token_request = _TokenRequest(settings.fcm_timeout_seconds)

    def _get_access_token(self) -> str:
        # pyfcm asks whenever a thread's session is new or 30 minutes old; the credentials'
        # token is reused until it nears expiry, so N threads do not mean N token exchanges.
        with self._token_lock:
            if not self.credentials.valid:
                self.credentials.refresh(self._token_request)
            token: str = self.credentials.token
            return token

    def send_request(self, payload: Any = None, timeout: Any = None) -> requests.Response:
        # pyfcm's version sleeps for Retry-After and calls itself again: never here.
        response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        if self._is_access_token_expired(response):
            with self._token_lock:
                self.credentials.refresh(self._token_request)
            self.thread_local.token_expiry = 0
            response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        sent: requests.Response = response
        return sent


class FcmSender:
    """Sends to FCM devices. The client is built on first use, so a worker whose credentials
    file is missing reports a retryable failure per delivery instead of failing to start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: _NonBlockingFCM | None = None
        self._lock = threading.Lock()

    def send(self, message: Message, devices: Sequence[Device]) -> list[Outcome]:
        try:
            client = self._fcm()
        except (OSError, ValueError, KeyError) as exc:
            failure = Retryable("fcm:credentials", f"cannot load FCM credentials: {exc!s}"[:300])
            return [failure] * len(devices)
        outcomes: list[Outcome] = []
        for device in devices:
            try:
                outcomes.append(self._send_one(client, message, device))
            except Exception as exc:
                # One device's surprise must not make the others (maybe already sent) retry.
                log.exception("FCM send to device %s failed", device.device_id)
                outcomes.append(Retryable("fcm:error", type(exc).__name__))
        return outcomes

    def _fcm(self) -> _NonBlockingFCM:
        with self._lock:
            if self._client is None:
                info = json.loads(Path(self._settings.fcm_service_account_file).read_text())
                if self._settings.fcm_project_id:
                    info["project_id"] = self._settings.fcm_project_id
                credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=[SCOPE]
                )
                self._client = _NonBlockingFCM(credentials, self._settings)
            return self._client

    def _send_one(self, client: _NonBlockingFCM, message: Message, device: Device) -> Outcome:
        payload = client.parse_payload(**fcm_message(message, device))
        timeout = self._settings.fcm_timeout_seconds
        try:
            response = client.send_request(payload, timeout=(timeout, timeout))
        except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
            return Retryable(
                "fcm:auth_error", f"FCM access token: {type(exc).__name__}: {exc!s}"[:300]
            )
        except requests.RequestException as exc:
            return Retryable("fcm:connection_error", f"FCM: {type(exc).__name__}")
        return classify(response, device)


def fcm_message(message: Message, device: Device) -> dict[str, Any]:
    """pyfcm's ``notify`` arguments for one device."""
    data = {"notificationId": str(message.notification_id)}
    for key, value in (message.data or {}).items():
        # FCM's data is a map of strings; anything else is sent as its JSON.
        data[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return {
        "fcm_token": device.token,
        "notification_title": message.subject,
        "notification_body": message.body,
        "data_payload": data,
        "android_config": {"priority": "high" if message.priority is Priority.HIGH else "normal"},
    }


def classify(response: requests.Response, device: Device) -> Outcome:
    if response.status_code == 200:
        try:
            return Sent(response.json().get("name"))
        except ValueError:
            return Sent(None)  # accepted all the same: sending again would duplicate it
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    details = error.get("details") or []
    fcm_code = next(
        (d.get("errorCode") for d in details if d.get("@type") == _FCM_ERROR_TYPE), None
    )
    code = fcm_code or error.get("status") or f"HTTP_{response.status_code}"
    text = str(error.get("message") or response.reason or "")
    reason = f"FCM {response.status_code} {code}: {text}".replace(device.token, device.token_prefix)
    reason = reason[:500]
    status = response.status_code
    if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and _about_token(error)):
        return InvalidRecipient(f"fcm:{code}", reason)
    if status == 429 or status >= 500:
        return Retryable(
            f"fcm:{code}", reason, retry_after_seconds(response.headers.get("Retry-After"))
        )
    if status == 401:
        return Retryable(f"fcm:{code}", reason)
    return Permanent(f"fcm:{code}", reason)


def _about_token(error: dict[str, Any]) -> bool:
    """Is an INVALID_ARGUMENT about the registration token (rather than the message)?"""
    for detail in error.get("details") or []:
        if detail.get("@type") == _BAD_REQUEST_TYPE:
            if any(v.get("field") == "message.token" for v in detail.get("fieldViolations", [])):
                return True
    return "registration token" in str(error.get("message", "")).lower()
