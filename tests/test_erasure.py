"""Erasure: DELETE /users/{userId} leaves no address of the user in any table (every text
column scanned), keeps ids, statuses and timestamps, and a suppressed address stays suppressed."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.helpers.api import SEED
from tests.helpers.recipients import claim, submit

EMAIL, PHONE = "ana.erased@example.com", "+15557654321"


def where_found(engine: Engine, needles: list[str]) -> list[str]:
    """Every (table.column) of the schema whose text holds one of ``needles``."""
    found = []
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type IN"
                " ('text', 'character varying', 'jsonb', 'json', 'ARRAY', 'bytea')"
            )
        ).all()
        assert len(columns) > 40  # the scan looks at the whole schema
        for table, column in columns:
            for needle in needles:
                hits = conn.scalar(
                    text(
                        f'SELECT count(*) FROM "{table}"'
                        f' WHERE position(lower(:needle) IN lower(CAST("{column}" AS text))) > 0'
                    ),
                    {"needle": needle},
                )
                if hits:
                    found.append(f"{table}.{column}")
    return found


def test_erasure_leaves_no_address_of_the_user_in_any_table(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    client.put(
        "/api/v1/users/ana", json={"email": EMAIL, "phone": PHONE, "name": "Ana"}, headers=auth
    )
    client.put("/api/v1/users/ana/preferences", json={"channels": {"SMS": False}}, headers=auth)
    client.put(
        "/api/v1/users/ana/devices",
        json={"platform": "fcm", "token": "ana-device-token-1", "appId": "app"},
        headers=auth,
    )
    client.put("/api/v1/suppressions/EMAIL/ana.erased@EXAMPLE.com", headers=auth)
    via_user = submit(
        client,
        auth,
        {**SEED, "recipientEmail": None, "userId": "ana", "channels": ["EMAIL", "SMS"]},
    )
    claim(engine, via_user["EMAIL"]), claim(engine, via_user["SMS"])
    by_address = submit(client, auth, {**SEED, "recipientEmail": "ana.erased@Example.com"})
    pending = submit(client, auth, {**SEED, "recipientEmail": None, "userId": "ana"})
    bob = submit(client, auth, {**SEED, "recipientEmail": "bob@example.com"})
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inbox_item (id, project_id, user_id, delivery_id, notification_id,"
                " category, body) VALUES (:id, 'default', 'ana', :d, :n, 'TRANSACTIONAL', 'hi')"
            ),
            {"id": str(uuid.uuid4()), "d": via_user["EMAIL"], "n": via_user["id"]},
        )
    assert set(where_found(engine, [EMAIL, PHONE])) >= {
        "user_profile.email",
        "user_profile.phone",
        "notification.recipient_email",
        "delivery.address",
        "suppression.address",
    }

    response = client.delete("/api/v1/users/ana", headers=auth)

    assert response.status_code == 200
    assert response.get_json() == {
        "userId": "ana",
        "profiles": 1,
        "preferences": 1,
        "devices": 1,
        "inboxItems": 1,
        "notificationsRedacted": 3,
        "deliveriesCancelled": 2,
        "suppressionsKept": 1,
    }
    assert where_found(engine, [EMAIL, PHONE, "ana-device-token"]) == []
    # Ids, statuses and timestamps stay; bob's notification is untouched.
    shown = client.get(f"/api/v1/notifications/{via_user['id']}", headers=auth).get_json()
    assert {d["status"] for d in shown["deliveries"]} == {"SKIPPED", "SENDING"}  # EMAIL suppressed
    assert (
        client.get(f"/api/v1/notifications/{pending['id']}", headers=auth).get_json()["status"]
        == "CANCELLED"
    )
    assert client.get(f"/api/v1/notifications/{by_address['id']}", headers=auth).status_code == 200
    assert claim(engine, bob["EMAIL"]).recipient_email == "bob@example.com"
    # The bounced address stays suppressed, by its hash: a new send to it is skipped.
    again = submit(client, auth, {**SEED, "recipientEmail": EMAIL})
    assert claim(engine, again["EMAIL"]).error_code == "suppressed"
    entry = client.get(f"/api/v1/suppressions/EMAIL/{EMAIL}", headers=auth).get_json()
    assert entry["address"] is None
    assert client.get("/api/v1/users/ana", headers=auth).status_code == 404


def test_erasing_an_unknown_user_answers_zeros(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.delete("/api/v1/users/nobody", headers=auth)

    assert response.status_code == 200
    assert set(response.get_json().values()) == {"nobody", 0}
