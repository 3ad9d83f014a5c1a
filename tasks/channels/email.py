"""EMAIL over SMTP with smtplib: STARTTLS, implicit TLS and AUTH by configuration.

Outcome classification (also in the README):

| SMTP outcome                                   | outcome           | code              |
| ---------------------------------------------- | ----------------- | ----------------- |
| 250 accepted                                   | sent              |                   |
| 4xx reply (RCPT, MAIL, DATA), e.g. 451, 452    | retryable         | ``smtp_4xx``      |
| 550, 551, 553 to RCPT (no such mailbox)        | invalid recipient | ``smtp_550`` …    |
| other 5xx reply                                | permanent         | ``smtp_5xx``      |
| AUTH refused (535)                             | retryable         | ``smtp_auth``     |
| connect refused, timeout, disconnect, TLS error| retryable         | ``smtp_connection`` |
| non-ASCII local part, no SMTPUTF8 offered      | permanent         | ``smtp_no_smtputf8`` |
| an address email-validator refuses             | permanent         | ``smtp_invalid_address`` |

An internationalised domain is sent as IDNA (``xn--``), so only a non-ASCII local part needs
SMTPUTF8. Addresses in SMTP replies are redacted before a reason is stored. A dead mailbox
(``smtp_550``, ``smtp_551``, ``smtp_553``) puts the address on the suppression list (a trigger of
migration 0010).

An email the recipient may opt out of (app/store/deliveries.py) carries RFC 8058's one-click
``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers, and ``{{unsubscribeUrl}}`` in its
bodies becomes the link: it opts the user out, or, for an email sent to an address alone,
suppresses the address.
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Self

import dkim
from email_validator import EmailNotValidError, validate_email

from app.core import unsubscribe
from app.core.process import ProcessContext
from app.core.settings import Settings
from app.core.unsubscribe import UNSUBSCRIBE_PLACEHOLDER
from tasks.channels.base import (
    InvalidRecipient,
    Message,
    Outcome,
    Permanent,
    Retryable,
    Sent,
    send_each,
)

_DEAD_MAILBOX_CODES = {550, 551, 553}

# What a DKIM signature covers, where the message has it: the headers a receiver shows or acts
# on (RFC 6376 5.4.1), the MIME structure, and one-click unsubscribe (RFC 8058 asks for both
# List-Unsubscribe headers to be signed).
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


class DkimSigner:
    """Signs a serialised message with dkimpy, relaxed/relaxed, rsa-sha256."""

    def __init__(self, private_key: bytes, selector: str, domain: str) -> None:
        self._key = private_key
        self._selector = selector.encode()
        self._domain = domain.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        if not settings.dkim_private_key_file:
            return None
        key = Path(settings.dkim_private_key_file).read_bytes()
        return cls(key, settings.dkim_selector, settings.dkim_domain)

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with its DKIM-Signature header first."""
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line and line[:1] not in b" \t"
        }
        signature = dkim.sign(
            raw,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in DKIM_HEADERS if h in present],
        )
        return bytes(signature) + raw


# Anything shaped like an address: replies often quote the recipient ("<ana@example.com>:
# mailbox unavailable"), and a stored error is shown to every reader of the delivery.
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


def redact_addresses(text: str) -> str:
    return _ADDRESS.sub("<address>", text)


def _reply_outcome(code: int, reply: bytes | str, *, at_rcpt: bool) -> Outcome:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = redact_addresses(f"SMTP {code} {text}".strip())
    if 400 <= code < 500:
        return Retryable("smtp_4xx", reason)
    if at_rcpt and code in _DEAD_MAILBOX_CODES:
        return InvalidRecipient(f"smtp_{code}", reason)
    return Permanent("smtp_5xx", reason)


class SmtpEmailProvider:
    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls(process.settings)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._domain = settings.smtp_from.rpartition("@")[2] or "localhost"
        self._signer = DkimSigner.from_settings(settings)

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        session = _Session(self._connect, self._send_one)
        try:
            yield from send_each(messages, session.send)
        finally:
            session.close()

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        if s.smtp_ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            if s.smtp_starttls and not s.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send_one(self, smtp: smtplib.SMTP, message: Message) -> Outcome:
        address = wire_address(message.recipient_email or "")
        if address is None:
            return Permanent("smtp_invalid_address", "the recipient is not a plain address")
        if not address.isascii():
            smtp.ehlo_or_helo_if_needed()
            if not smtp.has_extn("smtputf8"):
                return Permanent(
                    "smtp_no_smtputf8",
                    "the recipient's local part is not ASCII and the SMTP server does not"
                    " offer SMTPUTF8",
                )
        email = self.build(message, address)
        # Serialised here rather than by send_message, so that the bytes signed are the bytes
        # sent; a non-ASCII address goes over SMTPUTF8 with UTF-8 headers, as send_message would.
        international = not (address.isascii() and self._settings.smtp_from.isascii())
        raw = email.as_bytes(policy=policy.SMTPUTF8 if international else policy.SMTP)
        if self._signer is not None:
            raw = self._signer.sign(raw)
        try:
            smtp.sendmail(
                self._settings.smtp_from,
                [address],
                raw,
                mail_options=["SMTPUTF8", "BODY=8BITMIME"] if international else [],
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return _reply_outcome(code, reply, at_rcpt=True)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            _reset(smtp)
            return _reply_outcome(exc.smtp_code, exc.smtp_error, at_rcpt=False)
        return Sent(provider_message_id=email["Message-ID"])

    def build(self, message: Message, address: str | None = None) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._settings.smtp_from
        email["To"] = address or wire_address(message.recipient_email or "") or ""
        email["Subject"] = message.subject or ""
        email["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable across retries, so a receiver that got an attempt we recorded as failed can
        # recognise the resend as the same message.
        email["Message-ID"] = f"<{message.delivery_id}@{self._domain}>"
        email["X-Notification-Id"] = str(message.notification_id)
        link = self.unsubscribe_url(message)
        body, html_body = message.body, message.html_body
        if link is not None:
            email["List-Unsubscribe"] = f"<{link}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # The placeholder is where the link goes; an email without one shows nothing there.
        body = body.replace(UNSUBSCRIBE_PLACEHOLDER, link or "")
        if html_body:
            html_body = html_body.replace(UNSUBSCRIBE_PLACEHOLDER, html.escape(link or ""))
        email.set_content(body)
        if html_body:
            email.add_alternative(html_body, subtype="html")
        return email

    def unsubscribe_url(self, message: Message) -> str | None:
        """The one-click link of an email the recipient may opt out of: the user's, or without
        a user the address's; None for others, and when no UNSUBSCRIBE_SECRET is set."""
        secret = self._settings.unsubscribe_secret
        if not (message.opt_outable and secret):
            return None
        scope: unsubscribe.Scope | unsubscribe.AddressScope
        if message.user_id:
            scope = unsubscribe.Scope(
                message.project_id, message.user_id, message.category, message.channel.value
            )
        elif message.address_key:
            scope = unsubscribe.AddressScope(
                message.project_id,
                message.channel.value,
                message.address_key,
                str(message.delivery_id),
            )
        else:
            return None
        return unsubscribe.url(self._settings.public_base_url, secret, scope)


def wire_address(recipient: str) -> str | None:
    """The address as it goes on the wire: the domain as IDNA (``xn--``), so only a non-ASCII
    local part needs SMTPUTF8; None for what is not a plain address (the API refuses those,
    but rows accepted before it did may remain)."""
    try:
        parsed = validate_email(
            recipient,
            check_deliverability=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
    except EmailNotValidError:
        return None
    return f"{parsed.local_part}@{parsed.ascii_domain}"


class _Session:
    """One SMTP connection for a chunk's messages, opened by the first. Once the connection
    fails, every later message of the chunk gets that failure without being tried (nothing of
    it reached the server, so it is retried safely); the connection is never used again, since
    after a timeout its replies could be read as another message's."""

    def __init__(
        self,
        connect: Callable[[], smtplib.SMTP],
        send_one: Callable[[smtplib.SMTP, Message], Outcome],
    ) -> None:
        self._connect = connect
        self._send_one = send_one
        self._smtp: smtplib.SMTP | None = None
        self._failure: Outcome | None = None

    def send(self, message: Message) -> Outcome:
        if self._failure is not None:
            return self._failure
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            return self._send_one(self._smtp, message)
        except smtplib.SMTPAuthenticationError as exc:
            self._failure = Retryable("smtp_auth", f"SMTP AUTH refused: {exc.smtp_code}")
        except (OSError, smtplib.SMTPException) as exc:
            self._failure = Retryable(
                "smtp_connection", redact_addresses(f"SMTP connection failed: {exc!r}")[:500]
            )
        if self._smtp is not None:
            self._smtp.close()  # no QUIT: a server that stopped answering would hold us again
            self._smtp = None
        return self._failure

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _reset(smtp: smtplib.SMTP) -> None:
    """After a refused transaction the connection is reusable once RSET is accepted."""
    try:
        smtp.rset()
    except smtplib.SMTPException:
        pass
