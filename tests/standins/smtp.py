"""An SMTP server (aiosmtpd) that records what it receives and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.helpers.net import free_port

_REPLIES = {
    250: "250 2.1.5 OK",
    421: "421 4.3.0 service not available",
    450: "450 4.2.1 mailbox busy",
    451: "451 4.7.1 greylisted, try again later",
    452: "452 4.2.2 mailbox full",
    550: "550 5.1.1 no such mailbox",
    554: "554 5.7.1 rejected",
}


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


STALL = 0  # a planned "reply" that answers nothing for STALL_SECONDS, like a hung server
STALL_SECONDS = 20


class SmtpStandIn:
    """Accepts everything unless a recipient has a plan: a list of reply codes for RCPT TO."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_attempts: Counter[str] = Counter()
        self._plans: dict[str, deque[int]] = {}
        self._lock = threading.Lock()
        self.failure_rate = 0.0
        self.stall_seconds: float = STALL_SECONDS
        self._rng = random.Random()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpStandIn:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def plan(self, recipient: str, *codes: int) -> None:
        """Answer the next RCPT TO for ``recipient`` with these codes in turn, then 250."""
        with self._lock:
            self._plans[recipient.lower()] = deque(codes)

    def fail_randomly(self, rate: float, seed: int, stall_seconds: float) -> None:
        """Answer a share of RCPT TOs with 451 or silence (half each), like a flaky provider."""
        with self._lock:
            self.failure_rate, self.stall_seconds = rate, stall_seconds
            self._rng = random.Random(seed)

    def to(self, recipient: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if recipient in r.rcpt_tos]

    def count_by_recipient(self) -> Counter[str]:
        with self._lock:
            return Counter(rcpt for r in self.received for rcpt in r.rcpt_tos)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            self.rcpt_attempts[address] += 1
            plan = self._plans.get(address.lower())
            code = plan.popleft() if plan else 250
            if not plan and self.failure_rate and self._rng.random() < self.failure_rate:
                code = self._rng.choice((451, STALL))
        if code == STALL:
            await asyncio.sleep(self.stall_seconds)
            return _REPLIES[451]
        if code != 250:
            return _REPLIES[code]
        envelope.rcpt_tos.append(address)
        return _REPLIES[250]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 OK queued"
