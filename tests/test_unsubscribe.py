"""One-click unsubscribe (RFC 8058), end to end: the link is read off the email the SMTP
stand-in received, and POSTing it opts the user out with no key and no confirmation."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.core import unsubscribe
from tests.conftest import UNSUBSCRIBE_SECRET
from tests.helpers.api import wait_delivery
from tests.helpers.processes import Processes
from tests.helpers.recipients import MARKETING, claim, submit
from tests.standins.smtp import SmtpStandIn


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
    forged = [
        unsubscribe.sign("another-secret-of-at-least-32-characters", scope),
        f"{other_user.split('.')[0]}.{signature}",  # another user's payload, ana's signature
        f"{payload}.{signature[:-2]}AA",
        payload,
        "x" * 2000,
    ]

    for token in forged:
        response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400, token
        assert response.get_json()["error"]["code"] == "invalid_token"
        assert client.get(f"/u/{token}").status_code == 400
    assert preferences_row(engine) is None


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
