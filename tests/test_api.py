"""The HTTP API in-process against the real database: validation, auth, idempotency, reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from app.api.factory import create_app
from app.api.openapi import document
from app.core.settings import Settings
from tests.helpers.api import SEED, field_rules, post
from tests.helpers.db import rows_written
from tests.helpers.factories import make_notification


def test_seed_request_is_accepted_with_one_delivery_and_one_outbox_event(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    response = post(client, auth, SEED)

    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/notifications/{body['id']}"
    assert body["status"] == "PENDING"
    assert [(d["channel"], d["status"]) for d in body["deliveries"]] == [("EMAIL", "PENDING")]
    with engine.connect() as conn:
        outbox = conn.execute(
            text("SELECT delivery_id, channel, priority, status FROM outbox_event")
        ).all()
    assert [(str(r.delivery_id), r.channel, r.priority, r.status) for r in outbox] == [
        (body["deliveries"][0]["id"], "EMAIL", 0, "PENDING")
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"channels": ["FAX"]}, {("channels[0]", "enum")}),
        ({"channels": []}, {("channels", "too_short")}),
        ({"channels": ["EMAIL", "EMAIL"]}, {("channels", "value_error")}),
        ({"priority": "URGENT"}, {("priority", "enum")}),
        ({"type": "SPAM"}, {("type", "enum")}),
        ({"recipientEmail": "not-an-address"}, {("recipientEmail", "email")}),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, {("subject", "control_character")}),
        ({"body": ""}, {("body", "string_too_short")}),
        ({"recipient_email": "x@example.com"}, {("recipient_email", "extra_forbidden")}),
        ({"sendAt": "tomorrow"}, {("sendAt", "datetime_from_date_parsing")}),
        ({"sendAt": "2030-01-01T00:00:00"}, {("sendAt", "timezone_aware")}),
        ({"data": [1, 2]}, {("data", "dict_type")}),
        ({"recipientPhone": "555-1234"}, {("recipientPhone", "string_pattern_mismatch")}),
        ({"webhookUrl": "ftp://example.com/x"}, {("webhookUrl", "url_scheme")}),
        # PostgreSQL cannot store U+0000 in text or jsonb: refused and named, never a 500.
        ({"body": "a\u0000b"}, {("body", "no_nul_character")}),
        ({"subject": "\u0000"}, {("subject", "control_character")}),
        ({"data": {"k": ["ok", "\u0000"]}}, {("data", "no_nul_character")}),
        ({"data": {"\u0000": 1}}, {("data", "no_nul_character")}),
    ],
)
def test_invalid_body_is_422_naming_field_and_rule_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine, change: dict, expected: set
) -> None:
    response = post(client, auth, {**SEED, **change})

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"
    assert expected <= field_rules(response)
    assert rows_written(engine) == 0


def test_email_channel_requires_recipient_and_subject(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    body = {k: v for k, v in SEED.items() if k not in ("recipientEmail", "subject")}

    response = post(client, auth, body)

    assert response.status_code == 422
    assert field_rules(response) == {
        ("recipientEmail", "required_for_channel"),
        ("subject", "required_for_channel"),
    }
    assert rows_written(engine) == 0


def test_malformed_json_is_400_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    response = client.post(
        "/api/v1/notifications",
        data=b'{"channels": ["EMAIL",',
        headers={**auth, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"
    assert rows_written(engine) == 0


def test_json_that_is_not_an_object_is_400(client: FlaskClient, auth: dict[str, str]) -> None:
    response = post(client, auth, ["EMAIL"])

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


def test_non_json_content_type_is_415(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/api/v1/notifications", data="body=x", headers=auth)

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_oversized_body_is_413_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine, settings: Settings
) -> None:
    body = {**SEED, "body": "x" * settings.api_max_body_bytes}

    response = post(client, auth, body)

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert rows_written(engine) == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer nsk_wrong", "Basic dXNlcjpwYXNz", "nsk_without_scheme"],
)
def test_requests_without_a_valid_key_are_401_and_write_nothing(
    client: FlaskClient, engine: Engine, api_key: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    responses = [
        client.post("/api/v1/notifications", json=SEED, headers=headers),
        client.get("/api/v1/notifications", headers=headers),
        client.get(f"/api/v1/notifications/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=headers),
    ]

    assert [r.status_code for r in responses] == [401] * 3
    assert all(r.get_json()["error"]["code"] == "unauthorized" for r in responses)
    assert api_key not in "".join(r.get_data(as_text=True) for r in responses)
    assert rows_written(engine) == 0


def test_revoked_key_is_refused(client: FlaskClient, auth: dict[str, str], engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_key SET revoked_at = now()"))

    assert post(client, auth, SEED).status_code == 401


def test_api_key_is_stored_only_as_a_hash(engine: Engine, api_key: str) -> None:
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_key")).one()
    assert bytes(stored.key_hash) == hashlib.sha256(api_key.encode()).digest()
    assert api_key.startswith(stored.key_prefix) and len(stored.key_prefix) < 10
    # Every column, whatever the migrations add: the key appears in none, as text or as bytes.
    for column, value in stored._mapping.items():
        if isinstance(value, bytes | memoryview):
            assert api_key.encode() not in bytes(value), column
        else:
            assert api_key not in str(value), column


def test_same_idempotency_key_and_body_replays_the_original(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    first = post(client, auth, SEED, **{"Idempotency-Key": "order-42"})
    reordered = dict(reversed(list(SEED.items())))
    second = post(client, auth, reordered, **{"Idempotency-Key": "order-42"})

    assert first.status_code == second.status_code == 202
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification")) == 1


def test_same_idempotency_key_with_different_body_is_409(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    post(client, auth, SEED, **{"Idempotency-Key": "order-43"})

    response = post(client, auth, {**SEED, "body": "changed"}, **{"Idempotency-Key": "order-43"})

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification")) == 1


def test_the_request_hash_is_kept_only_for_a_notification_with_an_idempotency_key(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    keyed = post(client, auth, SEED, **{"Idempotency-Key": "order-44"}).get_json()["id"]
    plain = post(client, auth, SEED).get_json()["id"]

    with engine.connect() as conn:
        hashes = dict(
            conn.execute(text("SELECT CAST(id AS text), request_hash FROM notification")).all()
        )
        assert len(hashes[keyed]) == 32 and hashes[plain] is None
        with pytest.raises(IntegrityError, match="notification_idempotent_has_hash"):
            conn.execute(
                text("UPDATE notification SET request_hash = NULL WHERE id = :id"), {"id": keyed}
            )


def test_get_unknown_id_is_404_and_malformed_id_is_422(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    missing = client.get("/api/v1/notifications/3f0c1a9e-0000-4000-8000-000000000000", headers=auth)
    malformed = client.get("/api/v1/notifications/12345", headers=auth)

    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    assert malformed.status_code == 422
    assert field_rules(malformed) == {("id", "uuid_parsing")}


def test_cancel_stops_pending_deliveries_and_second_cancel_is_409(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    created = post(client, auth, SEED).get_json()

    first = client.post(f"/api/v1/notifications/{created['id']}/cancel", headers=auth)
    second = client.post(f"/api/v1/notifications/{created['id']}/cancel", headers=auth)

    assert first.status_code == 200
    assert first.get_json()["cancelled"] == 1
    assert first.get_json()["notification"]["status"] == "CANCELLED"
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "not_cancellable"
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT from_status, to_status FROM audit_log")).all()
    assert [tuple(r) for r in audit] == [("PENDING", "CANCELLED")]


def test_cancel_refuses_a_sent_delivery(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    sent = make_notification(engine, status="SENT")

    response = client.post(f"/api/v1/notifications/{sent.id}/cancel", headers=auth)

    assert response.status_code == 409


def test_list_filters_and_pages_with_a_cursor(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    ids = [
        post(client, auth, {**SEED, "type": t}).get_json()["id"]
        for t in ["MARKETING"] * 3 + ["SYSTEM"]
    ]
    client.post(f"/api/v1/notifications/{ids[0]}/cancel", headers=auth)

    first = client.get("/api/v1/notifications?type=MARKETING&limit=2", headers=auth).get_json()
    second = client.get(
        f"/api/v1/notifications?type=MARKETING&limit=2&cursor={first['nextCursor']}", headers=auth
    ).get_json()
    cancelled = client.get("/api/v1/notifications?status=CANCELLED", headers=auth).get_json()
    by_channel = client.get("/api/v1/notifications?channel=SMS", headers=auth).get_json()
    after = client.get(
        "/api/v1/notifications",
        query_string={"created_after": datetime.now(UTC).isoformat()},
        headers=auth,
    ).get_json()

    assert [i["id"] for i in first["items"]] == [ids[2], ids[1]]
    assert [i["id"] for i in second["items"]] == [ids[0]]
    assert second["nextCursor"] is None
    assert [i["id"] for i in cancelled["items"]] == [ids[0]]
    assert by_channel["items"] == []
    assert after["items"] == []


@pytest.mark.parametrize(
    ("query", "field", "rule"),
    [
        ("limit=0", "limit", "greater_than_equal"),
        ("limit=abc", "limit", "int_parsing"),
        ("status=LOST", "status", "enum"),
        ("cursor=garbage", "cursor", "cursor"),
        ("sort=asc", "sort", "extra_forbidden"),
    ],
)
def test_bad_list_query_is_422_naming_the_parameter(
    client: FlaskClient, auth: dict[str, str], query: str, field: str, rule: str
) -> None:
    response = client.get(f"/api/v1/notifications?{query}", headers=auth)

    assert response.status_code == 422
    assert (field, rule) in field_rules(response)


def test_health_endpoints_need_no_key(client: FlaskClient) -> None:
    assert client.get("/api/v1/health/live").status_code == 200
    ready = client.get("/api/v1/health/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


def test_ready_is_503_naming_the_unreachable_dependency(settings: Settings) -> None:
    broken = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))

    response = broken.test_client().get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.get_json()["checks"] == {"postgres": "ok", "redis": "unreachable"}


def test_unknown_route_and_wrong_method_answer_in_the_error_format(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    missing = client.get("/api/v1/nothing-here", headers=auth)
    wrong = client.delete("/api/v1/notifications", headers=auth)

    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and "error" in wrong.get_json()


def test_openapi_document_lists_exactly_the_routes_the_app_serves(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    served = set()
    for rule in client.application.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}

    doc = client.get("/api/v1/openapi.json", headers=auth).get_json()

    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served


def test_responses_match_the_openapi_schemas(client: FlaskClient, auth: dict[str, str]) -> None:
    doc = json.loads(json.dumps(document(client.application)))

    def check(response: Any, path: str, method: str) -> None:
        spec = doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = {**spec["content"]["application/json"]["schema"], "components": doc["components"]}
        resolver_doc = {"$ref": schema["$ref"], "components": doc["components"]}
        jsonschema.validate(response.get_json(), resolver_doc)

    created = post(
        client, auth, {**SEED, "sendAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    )
    check(created, "/api/v1/notifications", "post")
    check(post(client, auth, {"channels": ["FAX"]}), "/api/v1/notifications", "post")
    item = "/api/v1/notifications/{notification_id}"
    check(client.get(created.headers["Location"], headers=auth), item, "get")
    check(client.get("/api/v1/notifications", headers=auth), "/api/v1/notifications", "get")
    check(
        client.post(created.headers["Location"] + "/cancel", headers=auth), item + "/cancel", "post"
    )
    check(client.get("/api/v1/health/ready"), "/api/v1/health/ready", "get")


def test_database_outage_is_503_with_retry_after_and_no_internals(settings: Settings) -> None:
    down = create_app(replace(settings, database_url="postgresql://postgres@127.0.0.1:1/x"))

    response = down.test_client().post(
        "/api/v1/notifications", json=SEED, headers={"Authorization": "Bearer nsk_anything"}
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_accept_response_matches_what_get_reads_back(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = {**SEED, "sendAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}

    created = post(client, auth, body).get_json()
    read = client.get(f"/api/v1/notifications/{created['id']}", headers=auth).get_json()

    assert created == read


@pytest.mark.parametrize("moment", ["0959-09-06T22:53:44+19:10", "2030-01-01T00:00:00-21:49"])
def test_times_with_offsets_postgres_cannot_store_are_accepted_in_utc(
    client: FlaskClient, auth: dict[str, str], moment: str
) -> None:
    response = post(client, auth, {**SEED, "sendAt": moment})
    listed = client.get(
        "/api/v1/notifications", query_string={"created_before": moment}, headers=auth
    )

    assert response.status_code == 202
    assert datetime.fromisoformat(response.get_json()["sendAt"]) == datetime.fromisoformat(moment)
    assert listed.status_code == 200


def test_a_time_that_leaves_the_calendar_in_utc_is_422(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    response = post(client, auth, {**SEED, "sendAt": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 422
    assert field_rules(response) == {("sendAt", "value_error")}
    assert rows_written(engine) == 0
