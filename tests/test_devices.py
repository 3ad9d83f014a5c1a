"""The PUSH device registry API and PUSH submission rules, in-process against the database."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.openapi import document
from app.core.domain import Channel
from app.core.settings import PROVIDER_CHOICES
from tasks.channels import PROVIDER_SETTINGS, PROVIDERS, resolve
from tests.helpers.api import field_rules, post
from tests.helpers.db import rows_written
from tests.helpers.factories import make_device
from tests.helpers.push import APNS_TOKEN, FCM_TOKEN, register


def test_registering_a_device_creates_it_and_lists_it_without_the_token(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = register(client, auth, "u1", FCM_TOKEN, locale="pt-BR")
    listed = client.get("/api/v1/users/u1/devices", headers=auth)

    assert created.status_code == 201
    device = created.get_json()
    assert device["userId"] == "u1" and device["platform"] == "fcm"
    assert device["tokenPrefix"] == FCM_TOKEN[:8]
    assert device["active"] is True and device["locale"] == "pt-BR"
    assert listed.status_code == 200
    assert [d["id"] for d in listed.get_json()["items"]] == [device["id"]]
    assert FCM_TOKEN not in created.get_data(as_text=True) + listed.get_data(as_text=True)


def test_registering_a_known_token_again_updates_moves_and_reactivates_it(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    first = make_device(engine, "u1", "apns", APNS_TOKEN, active=False, deactivation_reason="x")

    again = register(client, auth, "u2", APNS_TOKEN, "apns", appId="com.example.other")

    assert again.status_code == 200
    device = again.get_json()
    assert device["id"] == str(first)
    assert (device["userId"], device["appId"], device["active"]) == (
        "u2",
        "com.example.other",
        True,
    )
    assert device["deactivationReason"] is None
    assert client.get("/api/v1/users/u1/devices", headers=auth).get_json()["items"] == []


def test_deleting_a_device_removes_it_and_only_its_owner_can(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    device = register(client, auth, "u1", FCM_TOKEN).get_json()

    by_other = client.delete(f"/api/v1/users/u2/devices/{device['id']}", headers=auth)
    removed = client.delete(f"/api/v1/users/u1/devices/{device['id']}", headers=auth)
    again = client.delete(f"/api/v1/users/u1/devices/{device['id']}", headers=auth)

    assert by_other.status_code == 404 and by_other.get_json()["error"]["code"] == "not_found"
    assert removed.status_code == 204
    assert again.status_code == 404
    assert client.get("/api/v1/users/u1/devices", headers=auth).get_json()["items"] == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"platform": "gcm"}, ("platform", "enum")),
        ({"token": None}, ("token", "string_type")),
        ({"token": "has space"}, ("token", "string_pattern_mismatch")),
        ({"platform": "apns", "token": "not-hex"}, ("token", "apns_token_format")),
        ({"appId": ""}, ("appId", "string_too_short")),
        ({"locale": "english please"}, ("locale", "string_pattern_mismatch")),
        ({"userId": "u1"}, ("userId", "extra_forbidden")),
    ],
)
def test_bad_device_registration_is_422_naming_field_and_rule(
    client: FlaskClient, auth: dict[str, str], engine: Engine, body: dict, expected: tuple
) -> None:
    valid = {"token": FCM_TOKEN, "platform": "fcm", "appId": "com.example.app"}

    response = client.put("/api/v1/users/u1/devices", json={**valid, **body}, headers=auth)

    assert response.status_code == 422
    assert expected in field_rules(response)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM push_device")) == 0


def test_device_registration_without_a_token_is_422_missing(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.put(
        "/api/v1/users/u1/devices", json={"platform": "fcm", "appId": "a"}, headers=auth
    )

    assert response.status_code == 422
    assert field_rules(response) == {("token", "missing")}


def test_malformed_user_and_device_ids_are_422(client: FlaskClient, auth: dict[str, str]) -> None:
    bad_user = client.get("/api/v1/users/bad%20user/devices", headers=auth)
    bad_put = register(client, auth, "x" * 129, FCM_TOKEN)
    bad_device = client.delete("/api/v1/users/u1/devices/12345", headers=auth)

    assert bad_user.status_code == 422 and field_rules(bad_user) == {
        ("userId", "string_pattern_mismatch")
    }
    assert bad_put.status_code == 422 and field_rules(bad_put) == {("userId", "string_too_long")}
    assert bad_device.status_code == 422 and field_rules(bad_device) == {
        ("deviceId", "uuid_parsing")
    }


def test_device_routes_without_a_valid_key_are_401_and_write_nothing(
    client: FlaskClient, engine: Engine
) -> None:
    headers = {"Authorization": "Bearer nsk_wrong"}

    responses = [
        client.put(
            "/api/v1/users/u1/devices",
            json={"token": FCM_TOKEN, "platform": "fcm", "appId": "a"},
            headers=headers,
        ),
        client.get("/api/v1/users/u1/devices"),
        client.delete(f"/api/v1/users/u1/devices/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
    ]

    assert [r.status_code for r in responses] == [401] * 3
    assert all(r.get_json()["error"]["code"] == "unauthorized" for r in responses)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM push_device")) == 0


def test_push_to_explicit_tokens_needs_each_to_be_an_active_registered_device(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    register(client, auth, "u1", FCM_TOKEN)
    make_device(engine, "u1", "apns", APNS_TOKEN, active=False)
    body = {"channels": ["PUSH"], "body": "hi", "deviceTokens": [FCM_TOKEN, "unknown", APNS_TOKEN]}

    refused = post(client, auth, body)
    accepted = post(client, auth, {**body, "deviceTokens": [FCM_TOKEN]})

    assert refused.status_code == 422
    assert field_rules(refused) == {
        ("deviceTokens[1]", "device_not_registered"),
        ("deviceTokens[2]", "device_not_registered"),
    }
    assert "unknown" not in refused.get_data(as_text=True)
    assert accepted.status_code == 202
    [delivery] = accepted.get_json()["deliveries"]
    assert (delivery["channel"], delivery["devices"]) == ("PUSH", [])


def test_push_needs_a_user_or_device_tokens(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    response = post(client, auth, {"channels": ["PUSH"], "body": "hi"})

    assert response.status_code == 422
    assert field_rules(response) == {("userId", "required_for_channel")}
    assert rows_written(engine) == 0


def test_every_channel_the_api_accepts_has_a_provider_for_every_setting_value() -> None:
    """The API accepts every channel; each value its provider setting allows must name a class
    the worker can build (a typo in the name table fails here, not in production)."""
    for channel in Channel:
        names = PROVIDERS[channel]
        if channel in PROVIDER_SETTINGS:
            assert set(names) == set(PROVIDER_CHOICES[PROVIDER_SETTINGS[channel]]), channel
        for dotted in names.values():
            provider = resolve(dotted)
            assert callable(provider.create) and callable(provider.send), dotted


def test_device_responses_match_the_openapi_schemas(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    doc = json.loads(json.dumps(document(client.application)))

    def check(response: Any, path: str, method: str) -> None:
        spec = doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = {"$ref": spec["content"]["application/json"]["schema"]["$ref"]}
        jsonschema.validate(response.get_json(), {**schema, "components": doc["components"]})

    devices = "/api/v1/users/{user_id}/devices"
    created = register(client, auth, "u1", FCM_TOKEN)
    check(created, devices, "put")
    check(register(client, auth, "u1", FCM_TOKEN), devices, "put")
    check(register(client, auth, "u1", FCM_TOKEN, "apns"), devices, "put")
    check(client.get("/api/v1/users/u1/devices", headers=auth), devices, "get")
    check(
        client.delete("/api/v1/users/u1/devices/nope", headers=auth),
        devices + "/{device_id}",
        "delete",
    )
    pushed = post(client, auth, {"channels": ["PUSH"], "body": "hi", "userId": "u1"})
    check(pushed, "/api/v1/notifications", "post")
