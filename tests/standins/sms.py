"""A Twilio-compatible Messages API: checks auth, path and form, records, answers by plan."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, replace
from urllib.parse import parse_qs

from app.core.settings import Settings
from tests.standins.httpserver import HttpStandIn, QuietHandler


@dataclass(frozen=True)
class Reply:
    """One planned answer: an HTTP status, the Twilio error code in its body, a Retry-After."""

    status: int
    code: int | None = None
    retry_after: str | None = None


SENDER = "+15005550006"  # the From number the tests configure (Twilio's test number)

STALL = Reply(0)  # answers nothing for STALL_SECONDS, like a hung gateway
STALL_SECONDS = 5

# What Twilio says for these codes; 21211 names the number, as the real API does.
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided is not a valid message-capable phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


@dataclass(frozen=True)
class SmsRequest:
    """One request as the gateway received it."""

    at: float
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    basic_auth: tuple[str, str] | None
    client_port: int


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        gateway: SmsGatewayStandIn = self.server.standin  # type: ignore[attr-defined]
        raw = self.read_body()
        form = parse_qs(raw.decode(), keep_blank_values=True)
        request = SmsRequest(
            at=time.monotonic(),
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            form=form,
            basic_auth=_basic_auth(self.headers.get("Authorization")),
            client_port=self.client_address[1],
        )
        reply, to = gateway.record(request)
        if reply is STALL:
            time.sleep(STALL_SECONDS)
            reply = Reply(503)
        if reply.status == 201:
            sid = "SM" + uuid.uuid4().hex
            gateway.accept(sid, request)
            body = {"sid": sid, "status": "queued", "to": to, "body": form["Body"][0]}
            self._json(201, body)
            return
        message = _MESSAGES.get(reply.code or 0, "error").format(to=to)
        error = {"code": reply.code, "message": message, "status": reply.status}
        headers = {"Retry-After": reply.retry_after} if reply.retry_after else {}
        self._json(reply.status, error if reply.code else {"status": reply.status}, headers)

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(headers or {})}
        self.answer(status, json.dumps(body).encode(), headers)


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


class SmsGatewayStandIn(HttpStandIn):
    """Accepts every valid request with 201 unless its ``To`` has a plan of replies."""

    handler = _Handler

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[SmsRequest] = []
        self.sent: dict[str, SmsRequest] = {}
        self.attempts: Counter[str] = Counter()
        self._plans: dict[str, deque[Reply]] = {}

    def plan(self, to: str, *replies: Reply | int) -> None:
        """Answer the next requests for ``to`` with these replies in turn, then 201."""
        with self.lock:
            self._plans[to] = deque(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.sent.clear()
            self.attempts.clear()
            self._plans.clear()

    def to(self, number: str) -> list[SmsRequest]:
        """The requests the gateway accepted for ``number``."""
        with self.lock:
            return [r for r in self.sent.values() if r.form.get("To") == [number]]

    def record(self, request: SmsRequest) -> tuple[Reply, str]:
        """Checks the request as Twilio would; otherwise the next planned reply."""
        to = (request.form.get("To") or [""])[0]
        with self.lock:
            self.requests.append(request)
            self.attempts[to] += 1
            if request.path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
                return Reply(404, 20404), to
            if request.basic_auth != (self.account_sid, self.auth_token):
                return Reply(401, 20003), to
            for field, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
                if not (request.form.get(field) or [""])[0]:
                    return Reply(400, code), to
            plan = self._plans.get(to)
            return (plan.popleft() if plan else Reply(201)), to

    def accept(self, sid: str, request: SmsRequest) -> None:
        with self.lock:
            self.sent[sid] = request


def live_sms(settings: Settings, gateway: SmsGatewayStandIn) -> Settings:
    """Settings that send SMS over HTTP to the gateway stand-in (``SMS_PROVIDER=twilio``)."""
    return replace(
        settings,
        sms_provider="twilio",
        sms_api_base_url=gateway.url,
        sms_account_sid=gateway.account_sid,
        sms_auth_token=gateway.auth_token,
        sms_from=SENDER,
    )
