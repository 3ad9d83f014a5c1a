"""The inbox REST API in-process against the real database and Redis: pages, marks, validation."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.factory import create_app
from app.api.live import tokens
from app.api.openapi import document
from app.core.inbox_events import inbox_of, user_channel
from app.core.settings import Settings, SettingsError
from tasks.deliver import WorkerContext, deliver_ids
from tests.conftest import WS_TOKEN_SECRET
from tests.helpers.api import post
from tests.helpers.inbox import in_app


def deliver_everything(settings: Settings, engine: Engine) -> None:
    """Run the worker's delivery code in this process for every delivery not yet sent."""
    with engine.connect() as conn:
        ids = [str(i) for i in conn.scalars(text("SELECT id FROM delivery ORDER BY created_at"))]
    context = WorkerContext.build(settings)
    try:
        deliver_ids(context, ids)
    finally:
        context.close()  # its pools' connections, or each test would leave them open


@pytest.fixture
def items(
    client: FlaskClient, auth: dict[str, str], settings: Settings, engine: Engine
) -> list[dict[str, Any]]:
    """Five items of ana (oldest first) and one of bob, stored by the IN_APP provider."""
    for n in range(5):
        assert post(client, auth, in_app("ana", f"ana {n}", subject=f"#{n}")).status_code == 202
        time.sleep(0.002)
    post(client, auth, in_app("bob", "bob's"))
    deliver_everything(settings, engine)
    page = client.get("/api/v1/users/ana/inbox", headers=auth).get_json()
    return list(reversed(page["items"]))


def inbox_writes(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*), count(read_at), count(deleted_at) FROM inbox_item")
        ).one()
        return tuple(row)  # type: ignore[return-value]


def test_inbox_pages_newest_first_with_a_cursor_and_counts_unread(
    client: FlaskClient, auth: dict[str, str], items: list[dict[str, Any]]
) -> None:
    first = client.get("/api/v1/users/ana/inbox?limit=2", headers=auth).get_json()
    second = client.get(
        f"/api/v1/users/ana/inbox?limit=2&cursor={first['nextCursor']}", headers=auth
    ).get_json()
    last = client.get(
        f"/api/v1/users/ana/inbox?limit=2&cursor={second['nextCursor']}", headers=auth
    ).get_json()

    assert [i["body"] for i in first["items"]] == ["ana 4", "ana 3"]
    assert [i["body"] for i in second["items"]] == ["ana 2", "ana 1"]
    assert [i["body"] for i in last["items"]] == ["ana 0"] and last["nextCursor"] is None
    assert first["unreadCount"] == 5
    assert items[0]["title"] == "#0" and items[0]["category"] == "TRANSACTIONAL"


def test_mark_read_read_all_and_delete_change_what_the_inbox_shows(
    client: FlaskClient, auth: dict[str, str], items: list[dict[str, Any]], engine: Engine
) -> None:
    base = "/api/v1/users/ana/inbox"

    read = client.post(f"{base}/{items[0]['id']}/read", headers=auth)
    again = client.post(f"{base}/{items[0]['id']}/read", headers=auth)
    unread = client.get(f"{base}?unread=true", headers=auth).get_json()
    deleted = client.delete(f"{base}/{items[1]['id']}", headers=auth)
    all_read = client.post(f"{base}/read-all", headers=auth)
    after = client.get(base, headers=auth).get_json()
    bob = client.get("/api/v1/users/bob/inbox", headers=auth).get_json()

    assert read.status_code == 200 and read.get_json()["readAt"] is not None
    assert again.get_json()["readAt"] == read.get_json()["readAt"]
    assert [i["body"] for i in unread["items"]] == ["ana 4", "ana 3", "ana 2", "ana 1"]
    assert unread["unreadCount"] == 4
    assert deleted.status_code == 204 and deleted.data == b""
    assert all_read.get_json() == {"marked": 3, "unreadCount": 0}
    assert [i["body"] for i in after["items"]] == ["ana 4", "ana 3", "ana 2", "ana 0"]
    assert after["unreadCount"] == 0
    assert bob["unreadCount"] == 1, "another user's inbox is untouched"
    assert client.delete(f"{base}/{items[1]['id']}", headers=auth).status_code == 404


def test_read_and_delete_publish_to_the_users_channel(
    client: FlaskClient,
    auth: dict[str, str],
    items: list[dict[str, Any]],
    redis_client: redis.Redis,
) -> None:
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(user_channel(redis_client, inbox_of("default", "ana")))
    subscriber.get_message(timeout=1)

    client.post(f"/api/v1/users/ana/inbox/{items[0]['id']}/read", headers=auth)
    client.delete(f"/api/v1/users/ana/inbox/{items[1]['id']}", headers=auth)
    events = [json.loads(subscriber.get_message(timeout=2)["data"]) for _ in range(2)]
    subscriber.close()

    assert events == [
        {"type": "read", "ids": [items[0]["id"]], "unreadCount": 4},
        {"type": "deleted", "ids": [items[1]["id"]], "unreadCount": 3},
    ]


def test_bad_cursor_unread_flag_and_limit_are_422_naming_the_parameter(
    client: FlaskClient, auth: dict[str, str], items: list[dict[str, Any]]
) -> None:
    base = "/api/v1/users/ana/inbox"
    cases = {
        "cursor=not-a-cursor": ("cursor", "cursor"),
        "cursor=bm90aWZpY2F0aW9uOjE": ("cursor", "cursor"),  # another API's cursor
        "unread=perhaps": ("unread", "bool_parsing"),
        "limit=0": ("limit", "greater_than_equal"),
        "colour=red": ("colour", "extra_forbidden"),
    }

    for query, (field, rule) in cases.items():
        response = client.get(f"{base}?{query}", headers=auth)
        error = response.get_json()["error"]
        assert response.status_code == 422, query
        assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == (field, rule), query


def test_malformed_ids_and_another_users_item_write_nothing(
    client: FlaskClient, auth: dict[str, str], items: list[dict[str, Any]], engine: Engine
) -> None:
    before = inbox_writes(engine)
    ana_item = items[0]["id"]

    malformed = client.post("/api/v1/users/ana/inbox/not-a-uuid/read", headers=auth)
    bad_user = client.post(f"/api/v1/users/{'x' * 129}/inbox/{ana_item}/read", headers=auth)
    unknown = client.post(f"/api/v1/users/ana/inbox/{uuid.uuid4()}/read", headers=auth)
    not_bobs = client.post(f"/api/v1/users/bob/inbox/{ana_item}/read", headers=auth)
    not_bobs_to_delete = client.delete(f"/api/v1/users/bob/inbox/{ana_item}", headers=auth)

    assert malformed.status_code == 422
    assert malformed.get_json()["error"]["fields"][0]["field"] == "item_id"
    assert bad_user.status_code == 422
    assert bad_user.get_json()["error"]["fields"][0]["field"] == "user_id"
    for response in (unknown, not_bobs, not_bobs_to_delete):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert inbox_writes(engine) == before


def test_every_inbox_route_needs_an_api_key_and_writes_nothing_without_one(
    client: FlaskClient, items: list[dict[str, Any]], engine: Engine
) -> None:
    item = items[0]["id"]
    wrong = {"Authorization": "Bearer nsk_not-a-real-key"}
    calls = [
        ("get", "/api/v1/users/ana/inbox"),
        ("post", f"/api/v1/users/ana/inbox/{item}/read"),
        ("post", "/api/v1/users/ana/inbox/read-all"),
        ("delete", f"/api/v1/users/ana/inbox/{item}"),
        ("post", "/api/v1/users/ana/ws-token"),
    ]

    for method, path in calls:
        for headers in ({}, wrong):
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.get_json()["error"]["code"] == "unauthorized"
    assert inbox_writes(engine) == (5 + 1, 0, 0)


def test_ws_token_names_its_user_expires_and_is_refused_without_a_secret(
    client: FlaskClient, auth: dict[str, str], settings: Settings, engine: Engine
) -> None:
    issued = client.post("/api/v1/users/ana/ws-token", headers=auth)
    body = issued.get_json()
    without_secret = create_app(replace(settings, ws_token_secret="")).test_client()
    refused = without_secret.post("/api/v1/users/ana/ws-token", headers=auth)

    assert issued.status_code == 201 and body["url"] == "/ws/notifications"
    assert tokens.verify(WS_TOKEN_SECRET, body["token"]) == ("default", "ana")
    with pytest.raises(tokens.TokenError, match="token expired"):
        tokens.verify(WS_TOKEN_SECRET, body["token"], now=time.time() + 3600)
    with pytest.raises(tokens.TokenError, match="invalid token"):
        tokens.verify("a-different-secret-of-32-characters!", body["token"])
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "ws_tokens_disabled"
    assert WS_TOKEN_SECRET not in refused.get_data(as_text=True)
    assert "ws_token_secret='***'" in repr(settings)


def test_a_short_ws_token_secret_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="WS_TOKEN_SECRET"):
        Settings.from_env({"WS_TOKEN_SECRET": "short"})


def test_inbox_responses_match_the_openapi_schemas(
    client: FlaskClient, auth: dict[str, str], items: list[dict[str, Any]]
) -> None:
    doc = json.loads(json.dumps(document(client.application)))

    def check(response: Any, path: str, method: str) -> None:
        spec = doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = spec["content"]["application/json"]["schema"]
        jsonschema.validate(response.get_json(), {**schema, "components": doc["components"]})

    base = "/api/v1/users/{user_id}"
    item = items[0]["id"]
    check(client.get("/api/v1/users/ana/inbox", headers=auth), f"{base}/inbox", "get")
    check(client.get("/api/v1/users/ana/inbox?cursor=x", headers=auth), f"{base}/inbox", "get")
    check(
        client.post(f"/api/v1/users/ana/inbox/{item}/read", headers=auth),
        f"{base}/inbox/{{item_id}}/read",
        "post",
    )
    check(
        client.post(f"/api/v1/users/bob/inbox/{item}/read", headers=auth),
        f"{base}/inbox/{{item_id}}/read",
        "post",
    )
    check(
        client.post("/api/v1/users/ana/inbox/read-all", headers=auth),
        f"{base}/inbox/read-all",
        "post",
    )
    check(
        client.delete(f"/api/v1/users/ana/inbox/{uuid.uuid4()}", headers=auth),
        f"{base}/inbox/{{item_id}}",
        "delete",
    )
    check(client.post("/api/v1/users/ana/ws-token", headers=auth), f"{base}/ws-token", "post")


def test_the_inbox_page_is_served_with_a_strict_content_security_policy(
    client: FlaskClient,
) -> None:
    page = client.get("/inbox")
    script = client.get("/inbox/static/inbox.js")

    assert page.status_code == 200 and b'id="unread-count"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert script.status_code == 200 and b"/ws-token" in script.data
