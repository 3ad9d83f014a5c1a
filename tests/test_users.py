"""User profiles: PUT replaces, PATCH merges, bulk identifies up to 1,000 (207), and a profile's
address is taken when the delivery is sent, not when it is accepted."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.helpers.api import field_rules, wait_delivery
from tests.helpers.processes import Processes, wait_for
from tests.helpers.recipients import claim, submit
from tests.standins.smtp import SmtpStandIn

ANA = {
    "email": "ana@example.com",
    "phone": "+351912345678",
    "name": "Ana",
    "locale": "pt-PT",
    "timezone": "Europe/Lisbon",
    "quietHours": {"start": "22:00", "end": "08:00"},
    "data": {"plan": "pro", "team": "blue"},
}


def profile_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM user_profile")) or 0)


def test_put_creates_then_replaces_and_clears_what_it_leaves_out(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.put("/api/v1/users/ana", json=ANA, headers=auth)
    again = client.put("/api/v1/users/ana", json=ANA, headers=auth)
    replaced = client.put("/api/v1/users/ana", json={"email": "ana@new.example"}, headers=auth)

    assert created.status_code == 201 and again.status_code == 200
    assert {k: created.get_json()[k] for k in ANA} == ANA
    assert created.get_json()["userId"] == "ana"
    body = client.get("/api/v1/users/ana", headers=auth).get_json()
    assert body == replaced.get_json()
    assert body["email"] == "ana@new.example"
    assert [body[k] for k in ("phone", "name", "timezone", "quietHours", "data")] == [None] * 5


def test_patch_merges_fields_and_data_keys_and_null_clears(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    client.put("/api/v1/users/ana", json=ANA, headers=auth)

    patched = client.patch(
        "/api/v1/users/ana",
        json={"phone": None, "data": {"team": None, "seats": 3}},
        headers=auth,
    )
    new = client.patch("/api/v1/users/bob", json={"email": "bob@example.com"}, headers=auth)

    assert patched.status_code == 200 and new.status_code == 201
    body = patched.get_json()
    assert body["phone"] is None
    assert body["email"] == ANA["email"] and body["quietHours"] == ANA["quietHours"]
    assert body["data"] == {"plan": "pro", "seats": 3}


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"email": "not an address"}, "email", "email"),
        ({"phone": "0912345678"}, "phone", "string_pattern_mismatch"),
        ({"timezone": "Mars/Olympus"}, "timezone", "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone", "timezone"),
        ({"locale": "not a locale"}, "locale", "string_pattern_mismatch"),
        ({"quietHours": {"start": "22:00", "end": "22:00"}}, "quietHours", "quiet_hours_empty"),
        (
            {"quietHours": {"start": "25:00", "end": "08:00"}},
            "quietHours.start",
            "string_pattern_mismatch",
        ),
        ({"nickname": "x"}, "nickname", "extra_forbidden"),
    ],
)
def test_bad_profile_is_422_naming_field_and_rule_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine, body: Any, field: str, rule: str
) -> None:
    put = client.put("/api/v1/users/ana", json=body, headers=auth)
    patch = client.patch("/api/v1/users/ana", json=body, headers=auth)

    for response in (put, patch):
        assert response.status_code == 422
        assert (field, rule) in field_rules(response)
    assert profile_count(engine) == 0


def test_bulk_answers_207_with_each_item_and_writes_only_the_valid_ones(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put("/api/v1/users/old", json={"name": "Old", "email": "old@example.com"}, headers=auth)

    response = client.post(
        "/api/v1/users/bulk",
        json={
            "users": [
                {"userId": "ana", "email": "ana@example.com"},
                {"userId": "old", "phone": "+15551234567"},
                {"userId": "bad", "email": "nope"},
                {"email": "x@example.com"},
                {"userId": "ana", "name": "again"},
            ]
        },
        headers=auth,
    )

    assert response.status_code == 207
    results = response.get_json()["results"]
    assert [(r["index"], r["userId"], r["status"]) for r in results] == [
        (0, "ana", 201),
        (1, "old", 200),
        (2, "bad", 422),
        (3, None, 422),
        (4, "ana", 422),
    ]
    assert results[2]["error"]["fields"][0]["field"] == "email"
    assert results[3]["error"]["fields"][0] == {
        "field": "userId",
        "rule": "missing",
        "message": "Field required",
    }
    assert results[4]["error"]["fields"][0]["rule"] == "duplicate_user"
    old = client.get("/api/v1/users/old", headers=auth).get_json()
    assert (old["name"], old["email"], old["phone"]) == ("Old", "old@example.com", "+15551234567")
    assert profile_count(engine) == 2


def test_bulk_of_more_than_1000_users_is_refused_whole(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    users = [{"userId": f"u{i}"} for i in range(1001)]

    response = client.post("/api/v1/users/bulk", json={"users": users}, headers=auth)

    assert response.status_code == 422
    assert ("users", "too_long") in field_rules(response)
    assert profile_count(engine) == 0


def test_get_of_an_unknown_user_is_404_and_another_projects_profile_is_not_seen(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    from tests.helpers.factories import make_api_key

    other = {"Authorization": f"Bearer {make_api_key(engine, project_id='beta').key}"}
    client.put("/api/v1/users/ana", json=ANA, headers=other)

    assert client.get("/api/v1/users/ana", headers=auth).status_code == 404
    assert client.get("/api/v1/users/ana", headers=other).status_code == 200


def test_email_and_sms_take_the_profile_address_and_a_request_address_wins(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    awake = {k: v for k, v in ANA.items() if k != "quietHours"}
    client.put("/api/v1/users/ana", json=awake, headers=auth)
    base = {"userId": "ana", "subject": "s", "body": "b", "channels": ["EMAIL", "SMS"]}

    from_profile = submit(client, auth, base)
    from_request = submit(client, auth, {**base, "recipientEmail": "other@example.com"})

    email, sms = claim(engine, from_profile["EMAIL"]), claim(engine, from_profile["SMS"])
    assert (email.status, email.recipient_email) == ("SENDING", "ana@example.com")
    assert (sms.status, sms.recipient_phone) == ("SENDING", "+351912345678")
    assert claim(engine, from_request["EMAIL"]).recipient_email == "other@example.com"


@pytest.mark.parametrize("channel", ["EMAIL", "SMS"])
def test_a_user_without_an_address_fails_no_address_and_is_never_sent(
    client: FlaskClient, auth: dict[str, str], engine: Engine, channel: str
) -> None:
    client.put("/api/v1/users/ana", json={"name": "Ana"}, headers=auth)
    ids = submit(
        client, auth, {"userId": "ana", "subject": "s", "body": "b", "channels": [channel]}
    )

    row = claim(engine, ids[channel])

    assert (row.status, row.error_code, row.attempts) == ("FAILED", "no_address", 0)
    shown = client.get(f"/api/v1/notifications/{ids['id']}", headers=auth).get_json()
    assert shown["status"] == "FAILED"
    assert shown["deliveries"][0]["errorCode"] == "no_address"


def test_submit_needs_an_address_or_a_user_for_email_and_sms(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/notifications",
        json={"subject": "s", "body": "b", "channels": ["EMAIL", "SMS"]},
        headers=auth,
    )

    assert response.status_code == 422
    assert field_rules(response) == {
        ("recipientEmail", "required_for_channel"),
        ("recipientPhone", "required_for_channel"),
    }


def test_a_retry_uses_the_address_corrected_in_the_profile_meanwhile(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
) -> None:
    smtp.plan("typo@exmaple.com", *[451] * 20)
    client.put("/api/v1/users/ana", json={"email": "typo@exmaple.com"}, headers=auth)
    processes.relay()
    processes.worker()

    ids = submit(
        client, auth, {"userId": "ana", "subject": "s", "body": "b", "channels": ["EMAIL"]}
    )
    wait_for(lambda: smtp.rcpt_attempts["typo@exmaple.com"] >= 1, 30, 0.05, "first attempt")
    client.patch("/api/v1/users/ana", json={"email": "ana@example.com"}, headers=auth)
    delivery = wait_delivery(client, auth, ids["id"], "SENT")

    [received] = smtp.to("ana@example.com")
    assert received.message["To"] == "ana@example.com"
    assert delivery["attempts"] >= 2
    assert smtp.to("typo@exmaple.com") == []
