"""Strict input: bodies parsed strictly (no NaN, no lossy numbers, no duplicate keys), header
fields without control characters, addresses only as plain local@domain, cursors that cannot
crash a query, and a rotated key that does not show its webhook secret again."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from tests.helpers.api import SEED, field_rules, post

WEBHOOK = {"channels": ["WEBHOOK"], "webhookUrl": "https://example.com/hook", "body": "hi"}


def post_raw(client: FlaskClient, auth: dict[str, str], raw: str) -> Any:
    return client.post(
        "/api/v1/notifications", data=raw.encode(), content_type="application/json", headers=auth
    )


def notifications_written(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM notification")) or 0)


def with_data(raw_data: str) -> str:
    return (
        '{"channels":["WEBHOOK"],"webhookUrl":"https://example.com/hook","body":"hi",'
        f'"data":{raw_data}}}'
    )


@pytest.mark.parametrize(
    "raw",
    [
        with_data('{"x": NaN}'),
        with_data('{"x": Infinity}'),
        with_data('{"x": -Infinity}'),
        with_data('{"x": 1e400}'),
        with_data('{"x": -1e400}'),
        with_data('{"x": 1e-400}'),
        with_data('{"x": 123456789012345678901234567890}'),
        with_data('{"x": -9223372036854775809}'),
        with_data('{"x": 1, "x": 2}'),
        with_data('{"a": [{"y": 1, "y": 1}]}'),
        '{"channels":["WEBHOOK"],"webhookUrl":"https://example.com/hook","body":"a","body":"b"}',
    ],
    ids=[
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e-400",
        "a 30-digit integer",
        "below int64",
        "duplicate key in data",
        "duplicate key nested",
        "duplicate top-level field",
    ],
)
def test_non_finite_or_lossy_numbers_and_duplicate_keys_are_400_malformed_json(
    client: FlaskClient, auth: dict[str, str], engine: Engine, raw: str
) -> None:
    response = post_raw(client, auth, raw)

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "malformed_json"
    assert notifications_written(engine) == 0


def test_numbers_jsonb_keeps_exactly_are_accepted_and_stored_as_sent(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    response = post_raw(
        client,
        auth,
        with_data('{"big": 9223372036854775807, "small": -9223372036854775808, "f": 12.5}'),
    )

    assert response.status_code == 202, response.get_data(as_text=True)
    with engine.connect() as conn:
        stored = conn.scalar(text("SELECT data FROM notification"))
    assert stored == {"big": 2**63 - 1, "small": -(2**63), "f": 12.5}


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_data_nested_past_the_documented_depth_is_422_naming_data(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    too_deep = post(client, auth, {**WEBHOOK, "data": nested(33)})
    deepest = post(client, auth, {**WEBHOOK, "data": nested(32)})

    assert too_deep.status_code == 422
    assert field_rules(too_deep) == {("data", "json_too_deep")}
    assert deepest.status_code == 202
    assert notifications_written(engine) == 1


CONTROLS = [
    "\x01",
    "\t",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1f",
    "\x7f",
    "\x85",
    "\x9f",
    "\u2028",
    "\u2029",
]


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_header_fields_refuse_control_characters_with_422(
    client: FlaskClient, auth: dict[str, str], engine: Engine, control: str
) -> None:
    subject = post(client, auth, {**SEED, "subject": f"Hello{control}there"})
    address = post(client, auth, {**SEED, "recipientEmail": f"user{control}x@example.com"})

    assert subject.status_code == 422
    assert field_rules(subject) == {("subject", "control_character")}
    assert address.status_code == 422
    assert [f["field"] for f in address.get_json()["error"]["fields"]] == ["recipientEmail"]
    assert notifications_written(engine) == 0


@pytest.mark.parametrize(
    "address",
    [
        "Joe <joe@example.com>",
        "friends: joe@example.com;",
        "undisclosed-recipients:;",
        "joe@example.com, ann@example.com",
        "joe(comment)@example.com",
        "joe@example.com (comment)",
        '"joe smith"@example.com',
        "=?utf-8?q?joe?=@example.com",
        "joe@[127.0.0.1]",
        "joe@[IPv6:::1]",
        "joe@localhost",
        "joe",
    ],
)
def test_addresses_other_than_plain_local_at_domain_are_422(
    client: FlaskClient, auth: dict[str, str], engine: Engine, address: str
) -> None:
    response = post(client, auth, {**SEED, "recipientEmail": address})

    assert response.status_code == 422
    assert [f["field"] for f in response.get_json()["error"]["fields"]] == ["recipientEmail"]
    assert notifications_written(engine) == 0


def test_internationalised_addresses_are_accepted(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    domain = post(client, auth, {**SEED, "recipientEmail": "anna@bücher.example"})
    local = post(client, auth, {**SEED, "recipientEmail": "jösé@example.com"})

    assert (domain.status_code, local.status_code) == (202, 202)
    assert notifications_written(engine) == 2


def cursor_of(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "position",
    [
        "0001-01-01T00:00:00+01:00|00000000-0000-4000-8000-000000000001",
        "2024-01-01T00:00:00+00:00|not-a-uuid",
        "2024-13-01T00:00:00+00:00|",
        "inbox:1",
        "",
    ],
)
def test_a_crafted_list_cursor_is_422_naming_cursor(
    client: FlaskClient, auth: dict[str, str], position: str
) -> None:
    response = client.get(
        "/api/v1/notifications", query_string={"cursor": cursor_of(position)}, headers=auth
    )

    assert response.status_code == 422, response.get_data(as_text=True)
    assert field_rules(response) == {("cursor", "cursor")}


def test_a_cursor_whose_offset_postgresql_refuses_is_read_in_utc(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # PostgreSQL takes offsets up to ±15:59, Python up to ±23:59: this was a 500.
    position = f"2024-01-01T00:00:00+23:59|{uuid.uuid4()}"

    response = client.get(
        "/api/v1/notifications", query_string={"cursor": cursor_of(position)}, headers=auth
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"items": [], "nextCursor": None}


@pytest.mark.parametrize("position", ["inbox:999999999999999999", "inbox:-1", "inbox:1\x00"])
def test_a_crafted_inbox_cursor_is_422_or_an_empty_page(
    client: FlaskClient, auth: dict[str, str], position: str
) -> None:
    response = client.get(
        "/api/v1/users/ivy/inbox", query_string={"cursor": cursor_of(position)}, headers=auth
    )

    assert response.status_code in (200, 422), response.get_data(as_text=True)
    if response.status_code == 422:
        assert field_rules(response) == {("cursor", "cursor")}


def test_a_rotated_key_does_not_show_its_webhook_secret_again(
    client: FlaskClient, engine: Engine
) -> None:
    admin = {"Authorization": f"Bearer {create_api_key(engine, 'admin', ['admin']).key}"}
    issued = client.post("/api/v1/api-keys", json={"name": "billing"}, headers=admin).get_json()

    rotated = client.post(f"/api/v1/api-keys/{issued['id']}/rotate", headers=admin)

    assert rotated.status_code == 201
    body = rotated.get_json()
    assert "webhookSecret" not in body
    assert issued["webhookSecret"] not in rotated.get_data(as_text=True)
    assert body["key"] != issued["key"] and body["rotatedFrom"] == issued["id"]
