"""Addresses on the wire: an internationalised domain goes as IDNA, a non-ASCII local part only
over SMTPUTF8 (``smtp_no_smtputf8`` otherwise), and no stored error text carries an address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.domain import Channel
from app.core.settings import Settings
from tasks.channels.base import InvalidRecipient, Message, Permanent, Sent
from tasks.channels.email import SmtpEmailProvider
from tests.helpers import contract
from tests.standins.smtp import SmtpStandIn


def message(recipient: str) -> Message:
    return contract.message(Channel.EMAIL, recipient_email=recipient)


def provider(server: SmtpStandIn) -> SmtpEmailProvider:
    return SmtpEmailProvider(
        Settings(
            email_provider="smtp",
            smtp_port=server.port,
            smtp_from="notifications@example.com",
            smtp_timeout_seconds=5.0,
        )
    )


@pytest.fixture
def plain(smtp: SmtpStandIn) -> SmtpStandIn:
    smtp.reset()
    return smtp


@pytest.fixture
def utf8_server() -> Iterator[SmtpStandIn]:
    server = SmtpStandIn(smtputf8=True).start()
    yield server
    server.stop()


def test_an_internationalised_domain_is_sent_as_idna_without_smtputf8(plain: SmtpStandIn) -> None:
    outcomes = list(provider(plain).send([message("anna@bücher.example")]))

    assert outcomes == [Sent(provider_message_id=outcomes[0].provider_message_id)]  # type: ignore[union-attr]
    assert [r.rcpt_tos for r in plain.received] == [["anna@xn--bcher-kva.example"]]
    assert plain.received[0].message["To"] == "anna@xn--bcher-kva.example"


def test_a_non_ascii_local_part_fails_with_smtp_no_smtputf8_and_its_chunk_mates_are_sent(
    plain: SmtpStandIn,
) -> None:
    outcomes = list(
        provider(plain).send(
            [message("first@example.com"), message("jösé@example.com"), message("last@example.com")]
        )
    )

    assert isinstance(outcomes[0], Sent) and isinstance(outcomes[2], Sent)
    assert isinstance(outcomes[1], Permanent) and outcomes[1].code == "smtp_no_smtputf8"
    assert sorted(r.rcpt_tos[0] for r in plain.received) == [
        "first@example.com",
        "last@example.com",
    ]


def test_a_non_ascii_local_part_goes_through_a_server_that_offers_smtputf8(
    utf8_server: SmtpStandIn,
) -> None:
    outcomes = list(provider(utf8_server).send([message("jösé@bücher.example")]))

    assert isinstance(outcomes[0], Sent), outcomes
    assert [r.rcpt_tos for r in utf8_server.received] == [["jösé@xn--bcher-kva.example"]]
    assert "SMTPUTF8" in utf8_server.received[0].mail_options


def test_an_smtp_reply_quoting_the_recipient_is_stored_without_the_address(
    plain: SmtpStandIn,
) -> None:
    plain.quote_addresses = True
    plain.plan("ghost@example.com", 550)
    plain.plan("busy@example.com", 452)

    outcomes = list(
        provider(plain).send([message("ghost@example.com"), message("busy@example.com")])
    )

    assert isinstance(outcomes[0], InvalidRecipient) and outcomes[0].code == "smtp_550"
    assert outcomes[1].code == "smtp_4xx"  # type: ignore[union-attr]
    reasons = [o.reason for o in outcomes]  # type: ignore[union-attr]
    assert all("@" not in r for r in reasons), reasons
    assert all("550" in reasons[0] and "452" in reasons[1] for _ in reasons)
