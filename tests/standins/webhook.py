"""A webhook receiver: records raw requests, verifies signatures, answers by plan or stalls."""

from __future__ import annotations

import hashlib
import hmac
import random
import ssl
import time
from collections import Counter, deque
from dataclasses import dataclass, replace

from app.core.settings import Settings
from tests.standins.httpserver import HttpStandIn, QuietHandler


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None = None
    location: str | None = None
    body: bytes | None = None  # the answer's body; ``status <n>`` when None
    headers: tuple[tuple[str, str], ...] = ()  # further headers of the answer
    delay: float = 0.0  # seconds to take before answering, like a slow receiver


STALL = Reply(0)  # answers nothing for STALL_SECONDS, like a hung receiver
STALL_SECONDS = 5


@dataclass(frozen=True)
class WebhookRequest:
    """One request exactly as it arrived."""

    at: float
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    client_port: int
    signature_valid: bool | None  # None when the receiver knows no secret


def valid_signature(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the HMAC and compare in constant time."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={expected.hexdigest()}", header)


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.standin  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.read_body()
        signature_valid = None
        if receiver.secret is not None:
            signature_valid = valid_signature(
                receiver.secret,
                headers.get("x-timestamp", ""),
                body,
                headers.get("x-signature", ""),
            )
        request = WebhookRequest(
            time.monotonic(),
            self.command,
            self.path,
            headers,
            body,
            self.client_address[1],
            signature_valid,
        )
        reply = receiver.record(request)
        if reply is STALL:
            time.sleep(receiver.stall_seconds)
            reply = Reply(200)
        time.sleep(reply.delay)
        if signature_valid is False:
            reply = Reply(401)
        extra = dict(reply.headers)
        if reply.retry_after:
            extra["Retry-After"] = reply.retry_after
        if reply.location:
            extra["Location"] = reply.location
        body = f"status {reply.status}".encode() if reply.body is None else reply.body
        self.answer(reply.status, body, extra)


class WebhookReceiver(HttpStandIn):
    """Answers 200 unless a path has a plan; with a ``secret``, a bad signature gets 401."""

    handler = _Handler

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.secret: str | None = None
        self.requests: list[WebhookRequest] = []
        self._plans: dict[str, deque[Reply]] = {}
        # X-Notification-Id of each request answered 200 at once (not after a stall), and
        # those requests themselves.
        self.delivered: Counter[str] = Counter()
        self.accepted: list[WebhookRequest] = []
        self._failure_rate = 0.0
        self._stall_share = 0.5
        self.stall_seconds: float = STALL_SECONDS
        self._rng = random.Random()

    def fail_randomly(
        self,
        rate: float,
        seed: int,
        *,
        stall_share: float = 0.5,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        """Answer a share of requests with 503 or silence for ``stall_seconds`` (``stall_share``
        of the failures), like a flaky receiver."""
        with self.lock:
            self._failure_rate, self._rng = rate, random.Random(seed)
            self._stall_share, self.stall_seconds = stall_share, stall_seconds

    def plan(self, path: str, *replies: Reply | int) -> None:
        """Answer the next requests to ``path`` with these replies in turn, then 200."""
        with self.lock:
            self._plans[path] = deque(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def clear(self) -> None:
        with self.lock:
            self.secret = None
            self.requests.clear()
            self._plans.clear()
            self.delivered.clear()
            self.accepted.clear()
            self._failure_rate = 0.0
            self.stall_seconds = STALL_SECONDS

    def to(self, path: str) -> list[WebhookRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def record(self, request: WebhookRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            plan = self._plans.get(request.path)
            if plan:
                reply = plan.popleft()
            elif self._failure_rate and self._rng.random() < self._failure_rate:
                reply = STALL if self._rng.random() < self._stall_share else Reply(503)
            else:
                reply = Reply(200)
            if reply.status == 200 and request.signature_valid is not False:
                self.delivered[request.headers.get("x-notification-id", "")] += 1
                self.accepted.append(request)
            return reply


def live_webhook(settings: Settings) -> Settings:
    """Settings that POST webhooks for real (``WEBHOOK_PROVIDER=http``), 127.0.0.1 allowed."""
    return replace(
        settings,
        webhook_provider="http",
        webhook_allowed_networks="127.0.0.1/32",
    )
