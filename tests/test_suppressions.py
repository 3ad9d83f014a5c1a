"""The suppression list: the API, addresses compared normalised, a suppressed delivery SKIPPED
without calling the provider, and entries added by a provider's dead-address answer."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.domain import DeliveryStatus
from app.store import deliveries
from app.store.deliveries import DeliveryResult
from tests.helpers.api import SEED, field_rules, post, wait_delivery
from tests.helpers.processes import Processes
from tests.helpers.recipients import claim, submit
from tests.standins.smtp import SmtpStandIn


def test_put_get_list_delete_and_the_domain_compared_case_folded(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.put("/api/v1/suppressions/EMAIL/Ana@Example.COM", headers=auth)
    changed = client.put(
        "/api/v1/suppressions/EMAIL/Ana@example.com", json={"reason": "complaint"}, headers=auth
    )
    client.put("/api/v1/suppressions/SMS/+15551234567", json={"reason": "bounce"}, headers=auth)

    assert created.status_code == 201 and changed.status_code == 200
    assert created.get_json()["address"] == "Ana@example.com"
    assert created.get_json()["reason"] == "manual"
    found = client.get("/api/v1/suppressions/EMAIL/Ana@EXAMPLE.com", headers=auth)
    assert found.status_code == 200 and found.get_json()["reason"] == "complaint"
    # The local part is compared as given.
    assert client.get("/api/v1/suppressions/EMAIL/ana@example.com", headers=auth).status_code == 404
    listed = client.get("/api/v1/suppressions?channel=SMS", headers=auth).get_json()
    assert [(i["address"], i["reason"]) for i in listed["items"]] == [("+15551234567", "bounce")]
    by_reason = client.get("/api/v1/suppressions?reason=complaint&limit=1", headers=auth).get_json()
    assert [i["channel"] for i in by_reason["items"]] == ["EMAIL"]
    assert by_reason["nextCursor"] is None
    assert (
        client.delete("/api/v1/suppressions/EMAIL/Ana@example.com", headers=auth).status_code == 204
    )
    assert (
        client.delete("/api/v1/suppressions/EMAIL/Ana@example.com", headers=auth).status_code == 404
    )


def test_the_list_pages_with_a_cursor(client: FlaskClient, auth: dict[str, str]) -> None:
    for n in range(3):
        client.put(f"/api/v1/suppressions/SMS/+1555123456{n}", headers=auth)

    first = client.get("/api/v1/suppressions?limit=2", headers=auth).get_json()
    rest = client.get(f"/api/v1/suppressions?limit=2&cursor={first['nextCursor']}", headers=auth)

    seen = [i["address"] for i in first["items"] + rest.get_json()["items"]]
    assert sorted(seen) == [f"+1555123456{n}" for n in range(3)]
    assert rest.get_json()["nextCursor"] is None


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        ("/api/v1/suppressions/FAX/x", None, "channel", "literal_error"),
        ("/api/v1/suppressions/EMAIL/not-an-address", None, "address", "email"),
        ("/api/v1/suppressions/SMS/5551234567", None, "address", "e164"),
        ("/api/v1/suppressions/SMS/+15551234567", {"reason": "bored"}, "reason", "enum"),
    ],
)
def test_bad_suppression_input_is_422_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], path: str, body: object, field: str, rule: str
) -> None:
    response = client.put(path, json=body, headers=auth)

    assert response.status_code == 422 and (field, rule) in field_rules(response)
    assert client.get("/api/v1/suppressions", headers=auth).get_json()["items"] == []


def test_a_delivery_to_a_suppressed_address_is_skipped_at_claim(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put("/api/v1/suppressions/EMAIL/gone@example.com", headers=auth)
    client.put("/api/v1/users/ana", json={"email": "gone@EXAMPLE.com"}, headers=auth)

    explicit = submit(client, auth, {**SEED, "recipientEmail": "gone@example.com"})
    from_profile = submit(client, auth, {**SEED, "recipientEmail": None, "userId": "ana"})

    for ids in (explicit, from_profile):
        row = claim(engine, ids["EMAIL"])
        assert (row.status, row.error_code, row.attempts) == ("SKIPPED", "suppressed", 0)


def test_a_real_550_suppresses_the_address_and_the_next_send_is_skipped_unsent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
) -> None:
    smtp.plan("nobody@example.com", 550)
    processes.relay()
    processes.worker()

    first = post(client, auth, {**SEED, "recipientEmail": "nobody@example.com"}).get_json()
    failed = wait_delivery(client, auth, first["id"], "FAILED")
    second = post(client, auth, {**SEED, "recipientEmail": "nobody@Example.com"}).get_json()
    skipped = wait_delivery(client, auth, second["id"], "SKIPPED")

    assert failed["errorCode"] == "smtp_550"
    entry = client.get("/api/v1/suppressions/EMAIL/nobody@example.com", headers=auth).get_json()
    assert (entry["reason"], entry["deliveryId"]) == ("bounce", failed["id"])
    assert skipped["errorCode"] == "suppressed" and skipped["attempts"] == 0
    assert smtp.rcpt_attempts["nobody@example.com"] == 1


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("sms_21211", "invalid_recipient"),
        ("sms_21614", "invalid_recipient"),
        ("sms_21610", "unsubscribed"),
    ],
)
def test_twilio_dead_number_codes_suppress_the_number(
    client: FlaskClient, auth: dict[str, str], engine: Engine, code: str, reason: str
) -> None:
    ids = submit(client, auth, {**SEED, "recipientPhone": "+15551230000", "channels": ["SMS"]})
    claim(engine, ids["SMS"])
    with engine.begin() as conn:
        deliveries.record_outcomes(
            conn, [DeliveryResult(ids["SMS"], DeliveryStatus.FAILED, None, code, "dead")]
        )

    entry = client.get("/api/v1/suppressions/SMS/+15551230000", headers=auth)
    assert entry.status_code == 200 and entry.get_json()["reason"] == reason


def test_other_failures_do_not_suppress(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    ids = submit(client, auth, {**SEED, "recipientPhone": "+15551230000", "channels": ["SMS"]})
    claim(engine, ids["SMS"])
    with engine.begin() as conn:
        deliveries.record_outcomes(
            conn, [DeliveryResult(ids["SMS"], DeliveryStatus.FAILED, None, "sms_21408", "x")]
        )

    assert client.get("/api/v1/suppressions", headers=auth).get_json()["items"] == []
