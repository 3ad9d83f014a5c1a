"""One-click unsubscribe (RFC 8058), end to end: the link is read off the email the SMTP
stand-in received, and POSTing it opts the user out with no key and no confirmation."""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.core import unsubscribe
from tests.conftest import UNSUBSCRIBE_SECRET
from tests.helpers.api import wait_delivery
from tests.helpers.processes import Processes
from tests.helpers.recipients import MARKETING, claim, submit
from tests.standins.smtp import SmtpStandIn

# A MARKETING email to an address alone: no userId, so no profile to hold a preference.
TO_ADDRESS = {k: v for k, v in MARKETING.items() if k != "userId"} | {
    "recipientEmail": "bob@example.com"
}


def preferences_row(engine: Engine) -> object:
    with engine.connect() as conn:
        return conn.execute(text("SELECT channels, categories FROM preference")).first()


def test_one_click_post_from_the_received_header_opts_the_user_out(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    client.put("/api/v1/users/ana", json={"email": "ana@example.com"}, headers=auth)
    processes.relay()
    processes.worker()
    news = {**MARKETING, "category": "news", "body": "Hi. Leave: {{unsubscribeUrl}}"}

    first = submit(client, auth, news)
    wait_delivery(client, auth, first["id"], "SENT")
    [received] = smtp.to("ana@example.com")
    header = received.message["List-Unsubscribe"]
    link = re.fullmatch(r"<(https://notify\.example\.com/u/[^>]+)>", header)
    assert link is not None, header
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.group(1) in received.message.get_content()

    # What a mail provider does: POST the URL, form-encoded, without any credentials.
    answer = client.post(
        urlsplit(link.group(1)).path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    second = submit(client, auth, news)

    assert answer.status_code == 200 and "unsubscribed" in answer.get_data(as_text=True)
    effective = client.get("/api/v1/users/ana/preferences", headers=auth).get_json()
    assert effective["categories"]["news"]["EMAIL"] is False
    assert effective["categories"]["news"]["SMS"] is True
    skipped = wait_delivery(client, auth, second["id"], "SKIPPED")
    assert skipped["errorCode"] == "preference_opt_out"
    assert len(smtp.to("ana@example.com")) == 1


def address_key(engine: Engine, channel: str, address: str) -> bytes:
    """The suppression list's key of an address, as the database computes it."""
    with engine.connect() as conn:
        return bytes(conn.scalar(text("SELECT address_key(:c, :a)"), {"c": channel, "a": address}))


def one_click(client: FlaskClient, token: str) -> int:
    return client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code


def test_one_click_from_an_email_to_an_address_alone_suppresses_the_address(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    processes.relay()
    processes.worker()
    first = submit(client, auth, {**TO_ADDRESS, "body": "Leave: {{unsubscribeUrl}}"})
    wait_delivery(client, auth, first["id"], "SENT")
    [received] = smtp.to("bob@example.com")
    link = re.fullmatch(
        r"<https://notify\.example\.com(/u/([^>.]+)\.[^>]+)>", received.message["List-Unsubscribe"]
    )
    assert link is not None, received.message["List-Unsubscribe"]
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.group(1) in received.message.get_content()
    # The link names the address by its hash only: URLs end up in logs.
    payload = base64.urlsafe_b64decode(link.group(2) + "=" * (-len(link.group(2)) % 4))
    assert b"bob" not in payload and b"example" not in payload

    answer = client.post(
        link.group(1),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    again = submit(client, auth, {**TO_ADDRESS, "recipientEmail": "bob@EXAMPLE.com"})
    receipt = submit(client, auth, {**TO_ADDRESS, "type": "TRANSACTIONAL", "body": "Receipt"})

    assert answer.status_code == 200 and "unsubscribed" in answer.get_data(as_text=True)
    entry = client.get("/api/v1/suppressions/EMAIL/bob@Example.com", headers=auth).get_json()
    assert (entry["address"], entry["reason"]) == ("bob@example.com", "unsubscribed")
    assert entry["deliveryId"] == first["EMAIL"]
    skipped = wait_delivery(client, auth, again["id"], "SKIPPED")
    assert skipped["errorCode"] == "suppressed"
    # A receipt is not something one can opt out of: it still goes, with no link.
    wait_delivery(client, auth, receipt["id"], "SENT")
    assert [r.message.get_content().strip() for r in smtp.to("bob@example.com")] == [
        received.message.get_content().strip(),
        "Receipt",
    ]
    assert smtp.to("bob@example.com")[1].message["List-Unsubscribe"] is None


@pytest.mark.parametrize(
    ("channel", "address", "reason", "held_back"),
    [
        # An e-mail address that unsubscribed holds back what may be opted out of only.
        ("EMAIL", "bob@example.com", "unsubscribed", [True, True, False, False, False]),
        # Anything else on the list holds back everything.
        ("EMAIL", "bob@example.com", "manual", [True, True, True, True, True]),
        # SMS STOP (Twilio 21610) is the carrier's block of every message.
        ("SMS", "+15551230000", "unsubscribed", [True, True, True, True, True]),
    ],
)
def test_an_unsubscribed_email_address_still_gets_what_cannot_be_opted_out_of(
    client: FlaskClient,
    auth: dict[str, str],
    engine: Engine,
    channel: str,
    address: str,
    reason: str,
    held_back: list[bool],
) -> None:
    client.put(f"/api/v1/suppressions/{channel}/{address}", json={"reason": reason}, headers=auth)
    client.put("/api/v1/categories/billing", json={"required": True}, headers=auth)
    field = "recipientEmail" if channel == "EMAIL" else "recipientPhone"
    base = {**TO_ADDRESS, "recipientEmail": None, field: address, "channels": [channel]}
    kinds = [
        {"type": "MARKETING"},
        {"type": "TRANSACTIONAL", "category": "news"},
        {"type": "TRANSACTIONAL"},
        {"type": "MARKETING", "category": "billing"},
        {"type": "SYSTEM"},
    ]
    ids = [submit(client, auth, {**base, **kind})[channel] for kind in kinds]

    rows = [claim(engine, delivery_id) for delivery_id in ids]

    assert [row.status == "SKIPPED" for row in rows] == held_back
    assert {row.error_code for row in rows if row.status == "SKIPPED"} <= {"suppressed"}


def test_an_address_link_keeps_a_stronger_entry_and_outlives_its_delivery(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put(
        "/api/v1/suppressions/EMAIL/gone@example.com", json={"reason": "bounce"}, headers=auth
    )
    gone_delivery = str(uuid.uuid4())  # a delivery since dropped by retention
    tokens = [
        unsubscribe.sign(
            UNSUBSCRIBE_SECRET,
            unsubscribe.AddressScope(
                "default", "EMAIL", address_key(engine, "EMAIL", a), gone_delivery
            ),
        )
        for a in ("gone@example.com", "old@example.com")
    ]

    assert [one_click(client, token) for token in tokens] == [200, 200]
    gone = client.get("/api/v1/suppressions/EMAIL/gone@example.com", headers=auth).get_json()
    old = client.get("/api/v1/suppressions/EMAIL/old@example.com", headers=auth).get_json()
    assert (gone["address"], gone["reason"]) == ("gone@example.com", "bounce")
    assert (old["address"], old["reason"], old["deliveryId"]) == (
        None,
        "unsubscribed",
        gone_delivery,
    )
    old_again = submit(client, auth, {**TO_ADDRESS, "recipientEmail": "old@example.com"})
    assert claim(engine, old_again["EMAIL"]).error_code == "suppressed"


def test_a_transactional_email_without_category_carries_no_unsubscribe_link(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put("/api/v1/users/ana", json={"email": "ana@example.com"}, headers=auth)
    client.put("/api/v1/categories/billing", json={"required": True}, headers=auth)
    receipt = submit(client, auth, {**MARKETING, "type": "TRANSACTIONAL"})
    required = submit(client, auth, {**MARKETING, "category": "billing"})
    newsletter = submit(client, auth, MARKETING)

    assert claim(engine, receipt["EMAIL"]).opt_outable is False
    assert claim(engine, required["EMAIL"]).opt_outable is False
    assert claim(engine, newsletter["EMAIL"]).opt_outable is True


def test_a_forged_or_altered_token_is_400_and_changes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    scope = unsubscribe.Scope("default", "ana", "news", "EMAIL")
    genuine = unsubscribe.sign(UNSUBSCRIBE_SECRET, scope)
    payload, signature = genuine.split(".")
    other_user = unsubscribe.sign(
        UNSUBSCRIBE_SECRET, unsubscribe.Scope("default", "bob", "news", "EMAIL")
    )
    at_address = unsubscribe.AddressScope("default", "EMAIL", b"k" * 32, str(uuid.uuid4()))
    genuine_address = unsubscribe.sign(UNSUBSCRIBE_SECRET, at_address)
    other_address = unsubscribe.sign(
        UNSUBSCRIBE_SECRET,
        unsubscribe.AddressScope("default", "EMAIL", b"x" * 32, str(uuid.uuid4())),
    )
    forged = [
        unsubscribe.sign("another-secret-of-at-least-32-characters", scope),
        f"{other_user.split('.')[0]}.{signature}",  # another user's payload, ana's signature
        f"{payload}.{signature[:-2]}AA",
        payload,
        "x" * 2000,
        unsubscribe.sign("another-secret-of-at-least-32-characters", at_address),
        f"{other_address.split('.')[0]}.{genuine_address.split('.')[1]}",
    ]

    for token in forged:
        response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400, token
        assert response.get_json()["error"]["code"] == "invalid_token"
        assert client.get(f"/u/{token}").status_code == 400
    assert preferences_row(engine) is None
    assert client.get("/api/v1/suppressions", headers=auth).get_json()["items"] == []


def test_get_shows_a_confirm_page_and_changes_nothing_and_post_needs_one_click(
    client: FlaskClient, engine: Engine
) -> None:
    token = unsubscribe.sign(UNSUBSCRIBE_SECRET, unsubscribe.Scope("default", "ana", None, "EMAIL"))

    page = client.get(f"/u/{token}")
    wrong = client.post(f"/u/{token}", data={"List-Unsubscribe": "yes"})

    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'name="List-Unsubscribe" value="One-Click"' in page.get_data(as_text=True)
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "one_click_required"
    assert preferences_row(engine) is None
    done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert tuple(preferences_row(engine)) == ({"EMAIL": False}, {})  # type: ignore[arg-type]
