"""Categories and preferences, judged in the worker's claim: a blocked delivery ends SKIPPED
``preference_opt_out`` (never FAILED, never sent), counted in notifications_skipped_total."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from app.core.settings import Settings
from tasks.deliver import WorkerContext, deliver_ids
from tests.helpers.api import field_rules
from tests.helpers.recipients import MARKETING, claim, submit


def put_preferences(client: FlaskClient, auth: dict[str, str], body: Any) -> Any:
    return client.put("/api/v1/users/ana/preferences", json=body, headers=auth)


@pytest.mark.parametrize(
    ("preferences", "notification", "expected"),
    [
        ({"channels": {"SMS": False}}, {}, {"EMAIL": "SENDING", "SMS": "SKIPPED"}),
        (
            {"categories": {"digest": False}},
            {"category": "digest"},
            {"EMAIL": "SKIPPED", "SMS": "SKIPPED"},
        ),
        (
            {"categories": {"digest": {"EMAIL": False}}},
            {"category": "digest"},
            {"EMAIL": "SKIPPED", "SMS": "SENDING"},
        ),
        # The most specific choice wins: the category back on for SMS beats SMS off.
        (
            {"channels": {"SMS": False}, "categories": {"digest": {"SMS": True}}},
            {"category": "digest"},
            {"EMAIL": "SENDING", "SMS": "SENDING"},
        ),
        (
            {"categories": {"digest": False}},
            {"category": "other"},
            {"EMAIL": "SENDING", "SMS": "SENDING"},
        ),
        # TRANSACTIONAL without a category and SYSTEM cannot be opted out of.
        (
            {"channels": {"SMS": False, "EMAIL": False}},
            {"type": "TRANSACTIONAL"},
            {"EMAIL": "SENDING", "SMS": "SENDING"},
        ),
        (
            {"categories": {"digest": False}},
            {"type": "SYSTEM", "category": "digest"},
            {"EMAIL": "SENDING", "SMS": "SENDING"},
        ),
        # TRANSACTIONAL with a category the user may leave is judged as its category.
        (
            {"categories": {"digest": False}},
            {"type": "TRANSACTIONAL", "category": "digest"},
            {"EMAIL": "SKIPPED", "SMS": "SKIPPED"},
        ),
    ],
)
def test_each_preference_shape_is_enforced_at_claim(
    client: FlaskClient,
    auth: dict[str, str],
    engine: Engine,
    preferences: Any,
    notification: Any,
    expected: dict[str, str],
) -> None:
    client.put(
        "/api/v1/users/ana",
        json={"email": "ana@example.com", "phone": "+15551234567"},
        headers=auth,
    )
    assert put_preferences(client, auth, preferences).status_code == 200
    ids = submit(client, auth, {**MARKETING, "channels": ["EMAIL", "SMS"], **notification})

    claimed = {channel: claim(engine, ids[channel]) for channel in ("EMAIL", "SMS")}

    assert {c: r.status for c, r in claimed.items()} == expected
    for row in claimed.values():
        if row.status == "SKIPPED":
            assert (row.error_code, row.attempts) == ("preference_opt_out", 0)


def test_a_category_s_default_channels_apply_until_the_user_chooses(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put(
        "/api/v1/users/ana",
        json={"email": "ana@example.com", "phone": "+15551234567"},
        headers=auth,
    )
    declared = client.put(
        "/api/v1/categories/alerts", json={"defaultChannels": ["EMAIL"]}, headers=auth
    )
    assert declared.status_code == 201
    first = submit(client, auth, {**MARKETING, "category": "alerts", "channels": ["EMAIL", "SMS"]})
    assert claim(engine, first["SMS"]).status == "SKIPPED"
    assert claim(engine, first["EMAIL"]).status == "SENDING"

    put_preferences(client, auth, {"categories": {"alerts": {"SMS": True}}})
    second = submit(client, auth, {**MARKETING, "category": "alerts", "channels": ["EMAIL", "SMS"]})

    assert claim(engine, second["SMS"]).status == "SENDING"
    effective = client.get("/api/v1/users/ana/preferences", headers=auth).get_json()
    assert effective["categories"]["alerts"] == {
        "EMAIL": True,
        "PUSH": False,
        "SMS": True,
        "WEBHOOK": False,
        "IN_APP": False,
    }


def test_a_required_category_cannot_be_opted_out_of(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put("/api/v1/users/ana", json={"email": "ana@example.com"}, headers=auth)
    put_preferences(client, auth, {"categories": {"security": False}})
    client.put("/api/v1/categories/security", json={"required": True}, headers=auth)

    refused = put_preferences(client, auth, {"categories": {"security": {"EMAIL": False}}})
    reserved = put_preferences(client, auth, {"categories": {"transactional": False}})
    # An opt-out stored before the category became required is ignored.
    ids = submit(client, auth, {**MARKETING, "category": "security"})

    assert refused.status_code == 422
    assert field_rules(refused) == {("categories.security", "category_required")}
    assert field_rules(reserved) == {("categories.transactional", "category_required")}
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT categories FROM preference"))
    assert stored == {"security": False}  # the refused PUTs wrote nothing
    assert claim(engine, ids["EMAIL"]).status == "SENDING"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"channels": {"FAX": False}}, "channels.FAX.[key]", "enum"),
        ({"categories": {"Bad Key": False}}, "categories.Bad Key.[key]", "string_pattern_mismatch"),
        ({"channels": {"SMS": "maybe"}}, "channels.SMS", "bool_parsing"),
    ],
)
def test_bad_preferences_are_422(
    client: FlaskClient, auth: dict[str, str], body: Any, field: str, rule: str
) -> None:
    response = put_preferences(client, auth, body)

    assert response.status_code == 422
    assert response.get_json()["error"]["fields"][0]["rule"] == rule


def test_summary_treats_skipped_as_settled(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put(
        "/api/v1/users/ana",
        json={"email": "ana@example.com", "phone": "+15551234567"},
        headers=auth,
    )
    put_preferences(client, auth, {"channels": {"SMS": False, "EMAIL": False}})
    all_skipped = submit(client, auth, {**MARKETING, "channels": ["EMAIL", "SMS"]})
    claim(engine, all_skipped["EMAIL"]), claim(engine, all_skipped["SMS"])
    put_preferences(client, auth, {"channels": {"SMS": False}})
    one_skipped = submit(client, auth, {**MARKETING, "channels": ["EMAIL", "SMS"]})
    claim(engine, one_skipped["EMAIL"]), claim(engine, one_skipped["SMS"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE delivery SET status = 'SENT' WHERE status = 'SENDING'"))

    def status(ids: dict[str, str]) -> str:
        return client.get(f"/api/v1/notifications/{ids['id']}", headers=auth).get_json()["status"]

    assert status(all_skipped) == "SKIPPED"
    assert status(one_skipped) == "SENT"
    listed = client.get("/api/v1/notifications?status=SKIPPED", headers=auth).get_json()
    assert [n["id"] for n in listed["items"]] == [all_skipped["id"]]


def test_a_skipped_delivery_is_counted_by_channel_and_reason_and_not_sent(
    client: FlaskClient, auth: dict[str, str], settings: Settings, engine: Engine
) -> None:
    labels = {"channel": "SMS", "reason": "preference_opt_out"}
    before = REGISTRY.get_sample_value("notifications_skipped_total", labels) or 0
    client.put("/api/v1/users/ana", json={"phone": "+15551234567"}, headers=auth)
    put_preferences(client, auth, {"channels": {"SMS": False}})
    ids = submit(client, auth, {**MARKETING, "channels": ["SMS"]})
    context = WorkerContext.build(settings)
    try:
        retry = deliver_ids(context, [ids["SMS"]])
    finally:
        context.close()

    assert retry == []
    assert REGISTRY.get_sample_value("notifications_skipped_total", labels) == before + 1
    with engine.connect() as conn:
        trail = conn.execute(text("SELECT from_status, to_status FROM audit_log")).all()
    assert [tuple(t) for t in trail] == [("PENDING", "SKIPPED")]
