"""Projects isolate tenants: every route, called with one project's key and another project's ids,
finds nothing (404, an empty list) and changes nothing of the other project."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.keys import IssuedKey, create_api_key
from app.api.live import tokens
from app.core import unsubscribe
from app.core.settings import Settings
from tasks.deliver import WorkerContext, deliver_ids
from tests.conftest import UNSUBSCRIBE_SECRET, WS_TOKEN_SECRET
from tests.helpers.inbox import Tab
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

ALL_SCOPES = ("send", "read", "admin")
# Routes that hold no project's data: served without a key, or the socket (tested below).
UNSCOPED = {
    "static",
    "prometheus_metrics",
    "health.health",
    "health.live",
    "health.ready",
    "openapi.openapi_json",
    "page.static",
    "page.inbox_page",
    "docs.static",
    "docs.docs_page",
    "docs.swagger_ui_asset",
    "console_page.static",
    "console_page.console_page",
    "websocket.notifications",
    # Served without a key: the project is in the signed token (tested below).
    "unsubscribe.confirm",
    "unsubscribe.one_click",
}
# What alpha keeps of ana (the same userId and address as beta's ana, so only the project
# tells them apart).
ANA = {"email": "ana@example.com", "name": "Ana Alpha"}
ANA_EMAIL = "/api/v1/suppressions/EMAIL/ana@example.com"


@dataclass
class Alpha:
    """What project alpha owns; project beta's key is pointed at all of it."""

    key: IssuedKey
    notification_id: str
    device_id: str
    item_id: str
    profile: dict[str, Any]
    preferences: dict[str, Any]
    category: dict[str, Any]
    suppression: dict[str, Any]


def bearer(key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


def deliver(settings: Settings, ids: list[str]) -> None:
    """The worker's delivery code, run in this process."""
    context = WorkerContext.build(settings)
    try:
        deliver_ids(context, ids)
    finally:
        context.close()


def deliver_all(settings: Settings, engine: Engine) -> None:
    with engine.connect() as conn:
        deliver(settings, [str(i) for i in conn.scalars(text("SELECT id FROM delivery"))])


def make_alpha(client: FlaskClient, settings: Settings, engine: Engine) -> Alpha:
    key = create_api_key(engine, "alpha", ALL_SCOPES, "alpha")
    device = client.put(
        "/api/v1/users/ana/devices",
        json={"token": "alpha-only-token", "platform": "fcm", "appId": "com.example.app"},
        headers=bearer(key),
    )
    assert device.status_code == 201
    sent = client.post(
        "/api/v1/notifications",
        json={"channels": ["IN_APP"], "userId": "ana", "subject": "hi", "body": "for alpha"},
        headers={**bearer(key), "Idempotency-Key": "order-1"},
    )
    assert sent.status_code == 202
    deliver_all(settings, engine)
    [item] = client.get("/api/v1/users/ana/inbox", headers=bearer(key)).get_json()["items"]
    # Ana's profile, preferences and address, and a category only alpha declared (required in
    # alpha, so a beta user opting out of a category of that name shows whose rule applied).
    made = [
        client.put("/api/v1/users/ana", json=ANA, headers=bearer(key)),
        client.put("/api/v1/categories/alpha-news", json={"required": True}, headers=bearer(key)),
        client.put(
            "/api/v1/users/ana/preferences", json={"channels": {"SMS": False}}, headers=bearer(key)
        ),
        client.put(ANA_EMAIL, json={"reason": "complaint"}, headers=bearer(key)),
    ]
    assert [r.status_code for r in made] == [201, 201, 200, 201]
    profile, category, prefs, suppression = (r.get_json() for r in made)
    return Alpha(
        key,
        sent.get_json()["id"],
        device.get_json()["id"],
        item["id"],
        profile,
        prefs,
        category,
        suppression,
    )


def alpha_unchanged(client: FlaskClient, engine: Engine, alpha: Alpha) -> None:
    """Alpha's notification (not redacted), device, unread item, profile, preferences, category,
    suppressed address and key are as they were."""
    auth = bearer(alpha.key)
    notification = client.get(f"/api/v1/notifications/{alpha.notification_id}", headers=auth)
    assert notification.status_code == 200
    assert notification.get_json()["status"] == "SENT"
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT user_id, body FROM notification WHERE id = :id"),
            {"id": alpha.notification_id},
        ).one()
    assert tuple(stored) == ("ana", "for alpha")
    assert client.get("/api/v1/users/ana", headers=auth).get_json() == alpha.profile
    prefs = client.get("/api/v1/users/ana/preferences", headers=auth).get_json()
    assert prefs == alpha.preferences
    category = client.get("/api/v1/categories/alpha-news", headers=auth).get_json()
    assert category == alpha.category
    assert client.get(ANA_EMAIL, headers=auth).get_json() == alpha.suppression
    devices = client.get("/api/v1/users/ana/devices", headers=auth).get_json()["items"]
    assert [(d["id"], d["active"]) for d in devices] == [(alpha.device_id, True)]
    inbox = client.get("/api/v1/users/ana/inbox", headers=auth).get_json()
    assert [(i["id"], i["readAt"]) for i in inbox["items"]] == [(alpha.item_id, None)]
    assert inbox["unreadCount"] == 1


@pytest.fixture
def two_projects(
    client: FlaskClient, settings: Settings, engine: Engine
) -> tuple[Alpha, IssuedKey]:
    return make_alpha(client, settings, engine), create_api_key(engine, "beta", ALL_SCOPES, "beta")


def test_no_route_reaches_another_projects_rows(
    flask_app: Flask, client: FlaskClient, engine: Engine, two_projects: tuple[Alpha, IssuedKey]
) -> None:
    alpha, beta_key = two_projects
    beta = bearer(beta_key)
    n, device, item = alpha.notification_id, alpha.device_id, alpha.item_id
    shown = client.get(f"/api/v1/notifications/{n}", headers=bearer(alpha.key)).get_json()
    alpha_delivery = shown["deliveries"][0]["id"]

    def not_found(method: str, url: str, **kwargs: Any) -> None:
        response = client.open(url, method=method, headers=beta, **kwargs)
        assert response.status_code == 404, (method, url, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"

    def sees_none_of_alpha(url: str) -> None:
        response = client.get(url, headers=beta)
        assert response.status_code == 200, url
        shown = response.get_data(as_text=True)
        for ident in (n, device, item, str(alpha.key.id), "alpha-news", "ana@example.com"):
            assert ident not in shown, (url, ident)

    def answers(method: str, url: str, status: int, body: Any = None) -> dict[str, Any]:
        response = client.open(url, method=method, headers=beta, json=body)
        assert response.status_code == status, (method, url, response.get_json())
        return response.get_json()  # type: ignore[no-any-return]

    def profile_of_own() -> None:
        made = answers("PUT", "/api/v1/users/ana", 201, {**ANA, "name": "Ana Beta"})
        assert made["name"] == "Ana Beta"

    def merge_into_own() -> None:
        assert answers("PATCH", "/api/v1/users/ana", 200, {"name": "Ana B."})["name"] == "Ana B."

    def bulk_into_own() -> None:
        users = [{"userId": "ana", "phone": "+15550000002"}, {"userId": "bob"}]
        results = answers("POST", "/api/v1/users/bulk", 207, {"users": users})["results"]
        assert [r["status"] for r in results] == [200, 201]

    def opt_out_of_a_category_only_alpha_requires() -> None:
        body = {"categories": {"alpha-news": False}}
        assert answers("PUT", "/api/v1/users/ana/preferences", 200, body)["categories"] == {
            "alpha-news": {channel: False for channel in alpha.preferences["channels"]}
        }

    def effective_preferences_of_own() -> None:
        shown = answers("GET", "/api/v1/users/ana/preferences", 200)
        assert shown == {
            "channels": {c: True for c in alpha.preferences["channels"]},
            "categories": {},
        }

    def declare_in_own_project() -> None:
        assert answers("PUT", "/api/v1/categories/alpha-news", 201, {})["required"] is False

    def suppress_in_own_project() -> None:
        assert answers("PUT", ANA_EMAIL, 201, {"reason": "manual"})["reason"] == "manual"

    def erase_own_user() -> None:
        # Beta's ana has alpha's ana's address: erasure is matched by user and address, and
        # must find beta's rows only.
        counts = answers("DELETE", "/api/v1/users/ana", 200)
        assert counts == {
            "userId": "ana",
            "profiles": 1,
            "preferences": 1,
            "devices": 1,
            "inboxItems": 0,
            "notificationsRedacted": 1,
            "deliveriesCancelled": 1,
            "suppressionsKept": 1,
        }

    def submit_in_own_project() -> None:
        # Alpha's token is no device of beta's; alpha's Idempotency-Key is free in beta.
        pushed = client.post(
            "/api/v1/notifications",
            json={"channels": ["PUSH"], "deviceTokens": ["alpha-only-token"], "body": "x"},
            headers=beta,
        )
        assert pushed.status_code == 422
        assert pushed.get_json()["error"]["fields"][0]["rule"] == "device_not_registered"
        own = client.post(
            "/api/v1/notifications",
            json={"channels": ["IN_APP"], "userId": "ana", "body": "for beta"},
            headers={**beta, "Idempotency-Key": "order-1"},
        )
        assert own.status_code == 202 and own.headers.get("Idempotent-Replayed") is None
        assert own.get_json()["id"] != n

    def create_key_in_own_project() -> None:
        made = client.post("/api/v1/api-keys", json={"name": "made-by-beta"}, headers=beta)
        assert made.status_code == 201
        assert made.get_json()["projectId"] == "beta"
        new_key = {"Authorization": f"Bearer {made.get_json()['key']}"}
        assert client.get(f"/api/v1/notifications/{n}", headers=new_key).status_code == 404
        listed = client.get("/api/v1/api-keys", headers=bearer(alpha.key)).get_json()
        assert made.get_json()["id"] not in {k["id"] for k in listed}

    def register_in_own_project() -> None:
        registered = client.put(
            "/api/v1/users/ana/devices",
            json={"token": "alpha-only-token", "platform": "fcm", "appId": "com.example.app"},
            headers=beta,
        )
        assert registered.status_code == 201  # a device of beta's, not alpha's moved over
        assert registered.get_json()["id"] != device

    def token_for_own_project() -> None:
        issued = client.post("/api/v1/users/ana/ws-token", headers=beta)
        assert issued.status_code == 201
        assert tokens.verify(WS_TOKEN_SECRET, issued.get_json()["token"]) == ("beta", "ana")

    def read_all_marks_nothing_of_alpha() -> None:
        response = client.post("/api/v1/users/ana/inbox/read-all", headers=beta)
        assert response.status_code == 200

    # Alpha's template and layout, which beta must neither see nor change nor send with.
    alpha_auth = bearer(alpha.key)
    layout = {"html": "{{ content }}"}
    template = {"channels": {"SMS": {"body": "hi"}}}
    assert client.put("/api/v1/layouts/a-l", json=layout, headers=alpha_auth).status_code == 201
    assert client.put("/api/v1/templates/a-t", json=template, headers=alpha_auth).status_code == 201

    def keys_listed(kind: str) -> None:
        response = client.get(f"/api/v1/{kind}", headers=beta)
        assert response.status_code == 200
        assert response.get_json()["items"] == []

    def put_own(kind: str, body: Any) -> None:
        response = client.put(f"/api/v1/{kind}/a-{kind[0]}", json=body, headers=beta)
        assert response.status_code == 201
        assert response.get_json()["version"] == 1  # beta's own first version, not alpha's 2nd

    def preview_refused() -> None:
        response = client.post("/api/v1/templates/a-t/preview", json={}, headers=beta)
        assert response.status_code == 422
        assert response.get_json()["error"]["fields"][0]["rule"] == "template_not_found"

    template_calls: dict[str, Callable[[], None]] = {
        "templates.list_templates": lambda: keys_listed("templates"),
        "templates.get_template": lambda: not_found("GET", "/api/v1/templates/a-t"),
        "templates.get_template_version": lambda: not_found(
            "GET", "/api/v1/templates/a-t/versions/1"
        ),
        "templates.preview": preview_refused,
        "templates.archive_template": lambda: not_found("DELETE", "/api/v1/templates/a-t"),
        "layouts.list_layouts": lambda: keys_listed("layouts"),
        "layouts.get_layout": lambda: not_found("GET", "/api/v1/layouts/a-l"),
        "layouts.get_layout_version": lambda: not_found("GET", "/api/v1/layouts/a-l/versions/1"),
        "layouts.archive_layout": lambda: not_found("DELETE", "/api/v1/layouts/a-l"),
        "templates.put_template": lambda: put_own("templates", template),
        "layouts.put_layout": lambda: put_own("layouts", layout),
    }

    calls: dict[str, Callable[[], None]] = {
        **template_calls,
        "notifications.submit": submit_in_own_project,
        "notifications.read": lambda: not_found("GET", f"/api/v1/notifications/{n}"),
        "notifications.list_notifications": lambda: sees_none_of_alpha("/api/v1/notifications"),
        "notifications.cancel": lambda: not_found("POST", f"/api/v1/notifications/{n}/cancel"),
        "api_keys.list_keys": lambda: sees_none_of_alpha("/api/v1/api-keys"),
        "api_keys.create_key": create_key_in_own_project,
        "api_keys.revoke_key": lambda: not_found("POST", f"/api/v1/api-keys/{alpha.key.id}/revoke"),
        "api_keys.rotate_key": lambda: not_found("POST", f"/api/v1/api-keys/{alpha.key.id}/rotate"),
        "devices.register": register_in_own_project,
        "devices.list_devices": lambda: sees_none_of_alpha("/api/v1/users/ana/devices"),
        "devices.remove": lambda: not_found("DELETE", f"/api/v1/users/ana/devices/{device}"),
        "inbox.list_items": lambda: sees_none_of_alpha("/api/v1/users/ana/inbox"),
        "inbox.read_item": lambda: not_found("POST", f"/api/v1/users/ana/inbox/{item}/read"),
        "inbox.read_all": read_all_marks_nothing_of_alpha,
        "inbox.delete_item": lambda: not_found("DELETE", f"/api/v1/users/ana/inbox/{item}"),
        "inbox.ws_token": token_for_own_project,
        "console.search": lambda: sees_none_of_alpha("/api/v1/console/notifications"),
        "console.history": lambda: not_found("GET", f"/api/v1/console/notifications/{n}"),
        "console.retry": lambda: not_found(
            "POST", f"/api/v1/console/deliveries/{alpha_delivery}/retry"
        ),
        "console.summary": lambda: sees_none_of_alpha("/api/v1/console/summary"),
        "users.read": lambda: not_found("GET", "/api/v1/users/ana"),
        "users.get_preferences": effective_preferences_of_own,
        "users.replace": profile_of_own,
        "users.merge": merge_into_own,
        "users.bulk": bulk_into_own,
        "users.put_preferences": opt_out_of_a_category_only_alpha_requires,
        "categories.read": lambda: not_found("GET", "/api/v1/categories/alpha-news"),
        "categories.list_categories": lambda: sees_none_of_alpha("/api/v1/categories"),
        "categories.put": declare_in_own_project,
        "suppressions.read": lambda: not_found("GET", ANA_EMAIL),
        "suppressions.list_suppressions": lambda: sees_none_of_alpha("/api/v1/suppressions"),
        "suppressions.remove": lambda: not_found("DELETE", ANA_EMAIL),
        "suppressions.put": suppress_in_own_project,
        "users.erase": erase_own_user,  # last: it removes beta's ana and what beta sent her
    }
    served = {rule.endpoint for rule in flask_app.url_map.iter_rules()} - UNSCOPED
    assert served == set(calls), "a route was added: say how it stays inside its project"

    for call in calls.values():  # in this order: beta registers alpha's token only later
        call()
        alpha_unchanged(client, engine, alpha)
    assert client.get("/api/v1/templates/a-t", headers=alpha_auth).get_json()["archivedAt"] is None
    assert client.get("/api/v1/layouts/a-l", headers=alpha_auth).get_json()["latestVersion"] == 1
    # Beta's own rows are there, and alpha's key still works.
    beta_list = client.get("/api/v1/notifications", headers=beta).get_json()["items"]
    assert len(beta_list) == 1
    assert client.get("/api/v1/api-keys", headers=bearer(alpha.key)).status_code == 200


def test_a_socket_of_one_project_never_sees_another_projects_user_of_the_same_id(
    processes: Processes, client: FlaskClient, settings: Settings, engine: Engine
) -> None:
    alpha = make_alpha(client, settings, engine)
    beta_key = create_api_key(engine, "beta", ALL_SCOPES, "beta")
    port = free_port()
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"

    alpha_tab = Tab.open(api, alpha.key.key, "ana")
    beta_tab = Tab.open(api, beta_key.key, "ana")
    assert [e["item"]["id"] for e in alpha_tab.backlog] == [alpha.item_id]
    assert beta_tab.backlog == [] and beta_tab.ready["unreadCount"] == 0

    # A new item for alpha's ana reaches alpha's socket only.
    sent = client.post(
        "/api/v1/notifications",
        json={"channels": ["IN_APP"], "userId": "ana", "body": "live for alpha"},
        headers=bearer(alpha.key),
    )
    assert sent.status_code == 202
    deliver(settings, [sent.get_json()["deliveries"][0]["id"]])
    event = alpha_tab.next()
    assert event["type"] == "item" and event["item"]["body"] == "live for alpha"
    assert beta_tab.nothing_within(1.0)


def test_create_api_key_puts_the_key_in_the_named_project(engine: Engine) -> None:
    issued = create_api_key(engine, "tenant-key", ("send",), "tenant-42")
    with engine.connect() as conn:
        project = conn.scalar(
            text("SELECT project_id FROM api_key WHERE id = :id"), {"id": str(issued.id)}
        )
    assert project == "tenant-42"
    with pytest.raises(ValueError):
        create_api_key(engine, "bad", ("send",), "Not A Slug")
    assert uuid.UUID(str(issued.id))


def test_an_unsubscribe_token_reaches_only_the_project_it_was_signed_for(
    client: FlaskClient, engine: Engine
) -> None:
    # /u/{token} takes no key: the project comes from the signed token, nowhere else.
    keys = {p: bearer(create_api_key(engine, p, ALL_SCOPES, p)) for p in ("alpha", "beta")}
    for auth in keys.values():
        assert client.put("/api/v1/users/ana", json=ANA, headers=auth).status_code == 201
    token = unsubscribe.sign(UNSUBSCRIBE_SECRET, unsubscribe.Scope("alpha", "ana", "news", "EMAIL"))
    payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moved = base64.urlsafe_b64encode(orjson.dumps({**claims, "p": "beta"})).decode().rstrip("=")

    refused = client.post(f"/u/{moved}.{signature}", data={"List-Unsubscribe": "One-Click"})
    beta_before = client.get("/api/v1/users/ana/preferences", headers=keys["beta"]).get_json()
    done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})

    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_token"
    assert done.status_code == 200
    alpha_after = client.get("/api/v1/users/ana/preferences", headers=keys["alpha"]).get_json()
    beta_after = client.get("/api/v1/users/ana/preferences", headers=keys["beta"]).get_json()
    assert alpha_after["categories"]["news"]["EMAIL"] is False
    assert beta_after == beta_before and "news" not in beta_after["categories"]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT project_id FROM preference")).scalars().all()
        key = bytes(conn.scalar(text("SELECT address_key('EMAIL', 'ana@example.com')")))
    assert rows == ["alpha"]

    # A token of an email sent to an address alone suppresses it in its project only.
    address = unsubscribe.AddressScope("alpha", "EMAIL", key, str(uuid.uuid4()))
    assert (
        client.post(
            f"/u/{unsubscribe.sign(UNSUBSCRIBE_SECRET, address)}",
            data={"List-Unsubscribe": "One-Click"},
        ).status_code
        == 200
    )
    alpha_entry = client.get(ANA_EMAIL, headers=keys["alpha"])
    assert alpha_entry.status_code == 200 and alpha_entry.get_json()["reason"] == "unsubscribed"
    assert client.get(ANA_EMAIL, headers=keys["beta"]).status_code == 404
