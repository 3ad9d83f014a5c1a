"""EMAIL over SMTP: the provider as the worker builds it (``SmtpEmailProvider(settings)``), sending
to the aiosmtpd stand-in over plain SMTP, STARTTLS, SMTPS and AUTH, and the outcome each SMTP
answer becomes (the README's table under "Email delivery and retries")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.domain import Channel
from app.core.settings import Settings
from tasks.channels.base import InvalidRecipient, Message, Permanent, Retryable, Sent
from tasks.channels.email import SmtpEmailProvider
from tests.helpers import contract
from tests.helpers.net import free_port
from tests.standins.smtp import Login, SmtpStandIn, Tls

USER, PASSWORD = "mailer", "s3cret-smtp-password"
# The stand-in lets AUTH happen outside TLS so that tests can see whether it did.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def message(recipient: str) -> Message:
    return contract.message(Channel.EMAIL, recipient_email=recipient)


def provider(server: SmtpStandIn | int, **smtp: object) -> SmtpEmailProvider:
    """The provider the worker builds, for ``SMTP_*`` settings naming this server (or port)."""
    settings = Settings(
        email_provider="smtp",
        smtp_port=server if isinstance(server, int) else server.port,
        smtp_from="notifications@example.com",
        smtp_timeout_seconds=5.0,
        **smtp,  # type: ignore[arg-type]
    )
    return SmtpEmailProvider(settings)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls.create(tmp_path)


@pytest.fixture
def trusted(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Tls:
    """The stand-in's CA is the one the process trusts. The provider verifies with the system's
    CAs (ssl.create_default_context()); OpenSSL reads SSL_CERT_FILE for them at each context."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    return tls


@pytest.fixture
def servers() -> Iterator[list[SmtpStandIn]]:
    """Stand-ins a test starts with its own TLS and AUTH options; all stopped afterwards."""
    started: list[SmtpStandIn] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def plain(smtp: SmtpStandIn) -> SmtpStandIn:
    """The session's plain stand-in, without another test's leftover plans."""
    smtp.reset()
    return smtp


def start(servers: list[SmtpStandIn], **options: object) -> SmtpStandIn:
    server = SmtpStandIn(**options).start()  # type: ignore[arg-type]
    servers.append(server)
    return server


# --- TLS and AUTH ---------------------------------------------------------------------------


def test_message_is_sent_over_starttls_when_configured(
    servers: list[SmtpStandIn], trusted: Tls
) -> None:
    server = start(servers, starttls=trusted)
    sent = message("ana@example.com")

    outcomes = list(provider(server, smtp_starttls=True).send([sent]))

    assert outcomes == [Sent(provider_message_id=f"<{sent.delivery_id}@example.com>")]
    assert [r.tls for r in server.to("ana@example.com")] == ["STARTTLS"]


def test_message_is_sent_over_implicit_tls_when_smtp_ssl_is_set(
    servers: list[SmtpStandIn], trusted: Tls
) -> None:
    server = start(servers, smtps=trusted)
    sent = message("ana@example.com")

    outcomes = list(provider(server, smtp_ssl=True).send([sent]))

    assert outcomes == [Sent(provider_message_id=f"<{sent.delivery_id}@example.com>")]
    assert [r.tls for r in server.to("ana@example.com")] == ["SMTPS"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_logs_in_with_the_configured_user_and_password(
    servers: list[SmtpStandIn], mechanism: str
) -> None:
    server = start(servers, credentials=(USER, PASSWORD), mechanisms=[mechanism])

    outcomes = list(
        provider(server, smtp_username=USER, smtp_password=PASSWORD).send(
            [message("ana@example.com"), message("bob@example.com")]
        )
    )

    assert [type(o) for o in outcomes] == [Sent, Sent]
    assert server.logins == [Login(mechanism, USER, PASSWORD, False, True)]
    assert {r.user for r in server.received} == {USER}


def test_with_starttls_the_credentials_are_sent_only_inside_tls(
    servers: list[SmtpStandIn], trusted: Tls
) -> None:
    server = start(servers, starttls=trusted, credentials=(USER, PASSWORD))

    outcomes = list(
        provider(server, smtp_starttls=True, smtp_username=USER, smtp_password=PASSWORD).send(
            [message("ana@example.com")]
        )
    )

    assert isinstance(outcomes[0], Sent)
    assert [(a.user, a.over_tls, a.accepted) for a in server.logins] == [(USER, True, True)]
    assert [(r.tls, r.user) for r in server.received] == [("STARTTLS", USER)]


def test_wrong_password_is_refused_with_535_and_every_message_is_retried_as_smtp_auth(
    servers: list[SmtpStandIn],
) -> None:
    server = start(servers, credentials=(USER, PASSWORD))

    outcomes = list(
        provider(server, smtp_username=USER, smtp_password="rotated-away").send(
            [message("ana@example.com"), message("bob@example.com")]
        )
    )

    assert outcomes == [Retryable("smtp_auth", "SMTP AUTH refused: 535")] * 2
    # smtplib tries each mechanism offered (PLAIN, then LOGIN); every one was refused.
    assert {(a.user, a.accepted) for a in server.logins} == {(USER, False)}
    assert server.received == [] and not server.rcpt_attempts


@pytest.mark.parametrize("mode", ["smtp_starttls", "smtp_ssl"])
def test_a_certificate_the_worker_does_not_trust_is_a_retried_connection_failure(
    servers: list[SmtpStandIn], tls: Tls, mode: str
) -> None:
    server = start(servers, **{"starttls" if mode == "smtp_starttls" else "smtps": tls})

    outcomes = list(provider(server, **{mode: True}).send([message("ana@example.com")]))

    [outcome] = outcomes
    assert isinstance(outcome, Retryable) and outcome.code == "smtp_connection"
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    assert server.received == [] and not server.rcpt_attempts


def test_starttls_configured_but_not_offered_sends_nothing_in_plain_text(
    servers: list[SmtpStandIn],
) -> None:
    server = start(servers)

    [outcome] = list(provider(server, smtp_starttls=True).send([message("ana@example.com")]))

    assert isinstance(outcome, Retryable) and outcome.code == "smtp_connection"
    assert server.received == [] and not server.rcpt_attempts


# --- replies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "code"),
    [("RCPT", 450), ("RCPT", 451), ("RCPT", 452), ("MAIL", 451), ("DATA", 451), ("DATA", 452)],
)
def test_a_4xx_reply_is_retried_as_smtp_4xx(plain: SmtpStandIn, at: str, code: int) -> None:
    address = "notifications@example.com" if at == "MAIL" else "later@example.com"
    plain.plan(address, code, at=at)

    [outcome] = list(provider(plain).send([message("later@example.com")]))

    assert isinstance(outcome, Retryable) and outcome.code == "smtp_4xx"
    assert outcome.reason.startswith(f"SMTP {code} ")
    assert plain.to("later@example.com") == []


@pytest.mark.parametrize("code", [550, 551, 553])
def test_a_dead_mailbox_reply_to_rcpt_fails_the_recipient_as_its_code(
    plain: SmtpStandIn, code: int
) -> None:
    plain.plan("gone@example.com", code)

    [outcome] = list(provider(plain).send([message("gone@example.com")]))

    assert isinstance(outcome, InvalidRecipient) and outcome.code == f"smtp_{code}"
    assert outcome.reason.startswith(f"SMTP {code} ")


@pytest.mark.parametrize(
    ("at", "code"), [("RCPT", 554), ("RCPT", 552), ("MAIL", 550), ("DATA", 550), ("DATA", 554)]
)
def test_any_other_5xx_reply_fails_permanently_as_smtp_5xx(
    plain: SmtpStandIn, at: str, code: int
) -> None:
    address = "notifications@example.com" if at == "MAIL" else "refused@example.com"
    plain.plan(address, code, at=at)

    [outcome] = list(provider(plain).send([message("refused@example.com")]))

    assert isinstance(outcome, Permanent) and outcome.code == "smtp_5xx"
    assert outcome.reason.startswith(f"SMTP {code} ")
    assert plain.to("refused@example.com") == []


def test_a_refused_message_does_not_stop_the_rest_of_the_batch_on_one_connection(
    plain: SmtpStandIn,
) -> None:
    plain.plan("bounce@example.com", 550)
    plain.plan("full@example.com", 452, at="DATA")
    batch = [message(r) for r in ("bounce@example.com", "a@example.com", "full@example.com")]
    batch.append(message("b@example.com"))

    outcomes = list(provider(plain).send(batch))

    assert [type(o) for o in outcomes] == [InvalidRecipient, Sent, Retryable, Sent]
    assert [r.rcpt_tos for r in plain.received] == [["a@example.com"], ["b@example.com"]]
    assert len({r.peer for r in plain.received}) == 1


def test_a_421_that_closes_the_connection_retries_the_rest_of_the_batch(
    plain: SmtpStandIn,
) -> None:
    plain.plan("closing@example.com", 421)
    batch = [message("first@example.com"), message("closing@example.com")]
    batch.append(message("after@example.com"))

    outcomes = list(provider(plain).send(batch))

    assert isinstance(outcomes[0], Sent)
    assert isinstance(outcomes[1], Retryable) and outcomes[1].code == "smtp_4xx"
    assert isinstance(outcomes[2], Retryable) and outcomes[2].code == "smtp_connection"
    assert [r.rcpt_tos for r in plain.received] == [["first@example.com"]]


def test_an_unreachable_server_retries_every_message_as_smtp_connection() -> None:
    outcomes = list(provider(free_port()).send([message("a@example.com"), message("b@x.org")]))

    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, Retryable) and outcome.code == "smtp_connection"
        assert "ConnectionRefusedError" in outcome.reason
