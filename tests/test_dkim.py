"""DKIM: with DKIM_PRIVATE_KEY_FILE, DKIM_SELECTOR and DKIM_DOMAIN set, the mail the SMTP
stand-in receives carries a relaxed/relaxed signature that dkimpy's verifier accepts against the
DNS answer this test provides; every email has Date, Message-ID and MIME-Version and parses
under Python's strict email policy."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from app.core.domain import Channel
from app.core.settings import Settings, SettingsError
from tasks.channels.base import Sent
from tasks.channels.email import DkimSigner, SmtpEmailProvider
from tests.helpers import contract
from tests.helpers.api import SEED, post
from tests.helpers.processes import Processes, wait_for
from tests.standins.smtp import SmtpStandIn

SELECTOR, DOMAIN = "mail2030", "example.com"


class Key:
    """An RSA key in a PEM file, and the TXT record that publishes it."""

    def __init__(self, directory: Path) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.file = directory / "dkim.pem"
        self.file.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def key(tmp_path: Path) -> Key:
    return Key(tmp_path)


def dns(*published: tuple[str, bytes]) -> object:
    """dkimpy's ``dnsfunc``: the TXT record of each name this test publishes, nothing else."""
    records = {f"{name}.".encode(): txt for name, txt in published}

    def answer(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name)

    return answer


def verifies(raw: bytes, key: Key) -> bool:
    return bool(dkim.verify(raw, dnsfunc=dns((f"{SELECTOR}._domainkey.{DOMAIN}", key.txt))))


def signed_headers(raw: bytes) -> list[str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    tags = dict(
        part.strip().split("=", 1)
        for part in re.sub(r"\s+", "", str(message["DKIM-Signature"])).split(";")
        if part
    )
    assert (tags["c"], tags["a"], tags["d"], tags["s"]) == (
        "relaxed/relaxed",
        "rsa-sha256",
        DOMAIN,
        SELECTOR,
    )
    return tags["h"].lower().split(":")


def send(smtp: SmtpStandIn, settings: Settings, **fields: object) -> bytes:
    provider = SmtpEmailProvider(
        replace(settings, email_provider="smtp", smtp_from=f"notifications@{DOMAIN}")
    )
    message = replace(contract.message(Channel.EMAIL, recipient_email="ana@example.org"), **fields)
    [outcome] = list(provider.send([message]))
    assert isinstance(outcome, Sent)
    [received] = smtp.to("ana@example.org")
    return received.raw


def with_dkim(settings: Settings, key: Key) -> Settings:
    return replace(
        settings,
        dkim_private_key_file=str(key.file),
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
    )


def test_mail_sent_through_the_pipeline_is_signed_and_verifies(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    key: Key,
) -> None:
    processes.relay()
    processes.worker(
        queues="email",
        DKIM_PRIVATE_KEY_FILE=str(key.file),
        DKIM_SELECTOR=SELECTOR,
        DKIM_DOMAIN=DOMAIN,
        SMTP_FROM=f"notifications@{DOMAIN}",
    )

    assert post(client, auth, {**SEED, "htmlBody": "<p>This is a test</p>"}).status_code == 202
    [received] = wait_for(lambda: smtp.to("user@example.com"), what="the email")  # type: ignore[misc]

    assert verifies(received.raw, key)
    assert set(signed_headers(received.raw)) == {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    }
    strict = email.message_from_bytes(received.raw, policy=email.policy.strict)
    assert all(strict[h] for h in ("Date", "Message-ID", "MIME-Version", "DKIM-Signature"))


def test_a_changed_subject_or_body_or_another_published_key_fails_verification(
    smtp: SmtpStandIn, settings: Settings, key: Key, tmp_path: Path
) -> None:
    smtp.reset()
    raw = send(smtp, with_dkim(settings, key), subject="Your order shipped", body="On its way.")
    other = Key(tmp_path / "..")

    assert verifies(raw, key)
    assert not verifies(raw.replace(b"Your order shipped", b"Your order cancelled"), key)
    assert not verifies(raw.replace(b"On its way.", b"Pay here.."), key)
    assert not verifies(raw, other)
    # Relaxed canonicalisation: refolding whitespace, as relays do, keeps it valid.
    assert verifies(
        raw.replace(b"Subject: Your order shipped", b"Subject:  Your  order shipped"), key
    )


def test_list_unsubscribe_headers_are_signed_when_present(key: Key) -> None:
    raw = (
        b"From: notifications@example.com\r\nTo: ana@example.org\r\nSubject: News\r\n"
        b"Date: Tue, 01 Jan 2030 09:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"List-Unsubscribe: <https://example.com/u/abc>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello\r\n"
    )

    signed = DkimSigner(key.file.read_bytes(), SELECTOR, DOMAIN).sign(raw)

    assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed_headers(signed))
    assert verifies(signed, key)
    assert not verifies(signed.replace(b"/u/abc", b"/u/evil"), key)


def test_without_dkim_settings_mail_is_unsigned_and_still_strictly_well_formed(
    smtp: SmtpStandIn, settings: Settings
) -> None:
    smtp.reset()
    raw = send(smtp, settings, subject="Hi", html_body="<p>Hi</p>")

    strict = email.message_from_bytes(raw, policy=email.policy.strict)
    assert strict["DKIM-Signature"] is None
    assert strict["MIME-Version"] == "1.0"
    assert strict["Message-ID"].startswith("<") and strict["Date"]


def test_a_key_file_without_selector_and_domain_is_refused_at_start(key: Key) -> None:
    with pytest.raises(SettingsError, match="DKIM_SELECTOR"):
        Settings.from_env({"DKIM_PRIVATE_KEY_FILE": str(key.file)})
