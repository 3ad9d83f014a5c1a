"""An SMTP server (aiosmtpd) that records what it receives and answers as a test scripts it.

Plain by default; it can also offer STARTTLS, speak implicit TLS (SMTPS), require AUTH
(PLAIN, LOGIN) with one user and password, and offer SMTPUTF8 (RFC 6531: non-ASCII addresses).
``Tls.create`` makes its certificate.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.helpers.net import free_port

_REPLIES = {
    250: "250 2.1.5 OK",
    421: "421 4.3.0 service not available",
    450: "450 4.2.1 mailbox busy",
    451: "451 4.7.1 greylisted, try again later",
    452: "452 4.2.2 mailbox full",
    550: "550 5.1.1 no such mailbox",
    551: "551 5.1.6 user has moved",
    552: "552 5.3.4 message too big",
    553: "553 5.1.3 mailbox name not allowed",
    554: "554 5.7.1 rejected",
}
STAGES = ("MAIL", "RCPT", "DATA")


def _reply(code: int) -> str:
    return _REPLIES.get(code, f"{code} scripted reply")


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: str | None = None  # "STARTTLS" or "SMTPS" when the message came over TLS
    user: str | None = None  # the AUTH user the session authenticated as
    peer: tuple[Any, ...] | None = None  # the client's address: one per connection
    mail_options: tuple[str, ...] = ()  # MAIL FROM's parameters, e.g. SMTPUTF8
    raw: bytes = b""  # the message as it came over DATA (what a DKIM verifier reads)
    at: float = field(default_factory=time.monotonic)  # when the server accepted it


@dataclass(frozen=True)
class Login:
    mechanism: str
    user: str
    password: str
    over_tls: bool
    accepted: bool


@dataclass(frozen=True)
class Tls:
    """A server certificate for 127.0.0.1 and localhost, and the CA file that verifies it."""

    context: ssl.SSLContext
    ca_file: Path

    @classmethod
    def create(cls, directory: Path) -> Tls:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        ca_file = directory / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(context, ca_file)


STALL = 0  # a planned "reply" that answers nothing for STALL_SECONDS, like a hung server
STALL_SECONDS = 20


class SmtpStandIn:
    """Accepts everything unless an address has a plan: a list of reply codes for RCPT TO (or
    for MAIL FROM or DATA).

    ``starttls``: offer STARTTLS with this certificate; ``smtps``: speak TLS from the first byte
    (implicit TLS); ``credentials``: require AUTH with this (user, password), by the
    ``mechanisms`` offered; ``smtputf8``: offer SMTPUTF8 in its EHLO answer.
    ``quote_addresses``: refusals of RCPT TO quote the address, as many servers' do.
    (No attribute of this handler may be named ``auth_*``: aiosmtpd
    would offer it as an AUTH mechanism.)"""

    def __init__(
        self,
        *,
        starttls: Tls | None = None,
        smtps: Tls | None = None,
        credentials: tuple[str, str] | None = None,
        mechanisms: Iterable[str] = ("PLAIN", "LOGIN"),
        smtputf8: bool = False,
    ) -> None:
        self.received: list[Received] = []
        self.rcpt_attempts: Counter[str] = Counter()
        self.logins: list[Login] = []
        self._plans: dict[tuple[str, str], deque[int]] = {}
        self._lock = threading.Lock()
        self.failure_rate = 0.0
        self.quote_addresses = False
        self.stall_seconds: float = STALL_SECONDS
        self._rng = random.Random()
        self._credentials = credentials
        self.port = free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=starttls.context if starttls else None,
            ssl_context=smtps.context if smtps else None,
            authenticator=self._authenticate if credentials else None,
            auth_required=credentials is not None,
            # Whether credentials travel inside TLS is what a test checks (Login.over_tls);
            # aiosmtpd's own check would also refuse AUTH over implicit TLS, which it misses.
            auth_require_tls=False,
            auth_exclude_mechanism={"PLAIN", "LOGIN"} - set(mechanisms),
            enable_SMTPUTF8=smtputf8,
        )

    def start(self) -> SmtpStandIn:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        """Nothing received, no plans, no logins."""
        with self._lock:
            self.received.clear()
            self.rcpt_attempts.clear()
            self.logins.clear()
            self._plans.clear()
            self.quote_addresses = False

    def plan(self, address: str, *codes: int, at: str = "RCPT") -> None:
        """Answer the next commands ``at`` one stage for ``address`` with these codes in turn,
        then 250: RCPT TO (the default) and DATA by recipient, MAIL FROM by sender."""
        assert at in STAGES, at
        with self._lock:
            self._plans[(at, address.lower())] = deque(codes)

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

    def _planned(self, at: str, address: str) -> int:
        plan = self._plans.get((at, address.lower()))
        return plan.popleft() if plan else 250

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        accepted = (user, password) == self._credentials
        with self._lock:
            self.logins.append(
                Login(mechanism, user, password, _tls_of(server) is not None, accepted)
            )
        # handled=False: aiosmtpd then answers a refusal itself, with 535.
        return AuthResult(success=accepted, handled=False, auth_data=user if accepted else None)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            code = self._planned("MAIL", address)
        if code != 250:
            return _reply(code)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            self.rcpt_attempts[address] += 1
            plan = self._plans.get(("RCPT", address.lower()))
            code = plan.popleft() if plan else 250
            if not plan and self.failure_rate and self._rng.random() < self.failure_rate:
                code = self._rng.choice((451, STALL))
        if code == STALL:
            await asyncio.sleep(self.stall_seconds)
            return _REPLIES[451]
        if code != 250:
            return f"{_reply(code)} <{address}>" if self.quote_addresses else _reply(code)
        envelope.rcpt_tos.append(address)
        return _REPLIES[250]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            codes = [self._planned("DATA", rcpt) for rcpt in envelope.rcpt_tos]
        refused = [code for code in codes if code != 250]
        if refused:
            return _reply(refused[0])
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            message,
            tls=_tls_of(server),
            user=session.auth_data if session.authenticated else None,
            peer=session.peer,
            mail_options=tuple(envelope.mail_options),
            raw=envelope.original_content or envelope.content,
        )
        with self._lock:
            self.received.append(received)
        return "250 2.0.0 OK queued"


def _tls_of(server: Any) -> str | None:
    """How the session is encrypted: "STARTTLS" (upgraded), "SMTPS" (from the start), or None."""
    if server.transport is None or server.transport.get_extra_info("ssl_object") is None:
        return None
    return "STARTTLS" if server.session.ssl is not None else "SMTPS"
