"""Calls to the API in this process (Flask's test client): submitting notifications and waiting
for a delivery to reach a status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

from flask.testing import FlaskClient

from tests.helpers.processes import wait_for

SEED = {
    "type": "TRANSACTIONAL",
    "priority": "HIGH",
    "recipientEmail": "user@example.com",
    "subject": "Test Notification",
    "body": "This is a test",
    "channels": ["EMAIL"],
}


# A WEBHOOK notification; the receiver's URL is added per test.
HOOK = {
    "type": "TRANSACTIONAL",
    "priority": "NORMAL",
    "subject": "Order shipped",
    "body": "It is on its way.",
    "data": {"orderId": 42, "items": ["book", "lamp"]},
    "channels": ["WEBHOOK"],
}


def post(client: FlaskClient, auth: dict[str, str], body: Any, **headers: str) -> Any:
    return client.post("/api/v1/notifications", json=body, headers={**auth, **headers})


def field_rules(response: Any) -> set[tuple[str, str]]:
    return {(f["field"], f["rule"]) for f in response.get_json()["error"]["fields"]}


def delivery_of(
    client: FlaskClient, auth: dict[str, str], notification_id: str, channel: str | None = None
) -> dict[str, Any]:
    """The notification's delivery on ``channel`` (its only one when None)."""
    body = client.get(f"/api/v1/notifications/{notification_id}", headers=auth).get_json()
    if channel is None:
        return body["deliveries"][0]
    [delivery] = [d for d in body["deliveries"] if d["channel"] == channel]
    return delivery


def wait_delivery(
    client: FlaskClient,
    auth: dict[str, str],
    notification_id: str,
    status: str,
    timeout: float = 30,
    channel: str | None = None,
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        delivery = delivery_of(client, auth, notification_id, channel)
        return delivery if delivery["status"] == status else None

    return wait_for(reached, timeout, 0.1, f"delivery {status}")  # type: ignore[return-value]


def http(
    method: str,
    url: str,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, Any]:
    """(status, response headers, parsed JSON body or None) of one HTTP request to a running
    API; error answers are answers too."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, method=method, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, error.headers, json.loads(raw) if raw else None
