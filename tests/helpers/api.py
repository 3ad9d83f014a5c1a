"""Calls to the API in this process (Flask's test client): submitting notifications and waiting
for a delivery to reach a status."""

from __future__ import annotations

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


def post(client: FlaskClient, auth: dict[str, str], body: Any, **headers: str) -> Any:
    return client.post("/api/v1/notifications", json=body, headers={**auth, **headers})


def field_rules(response: Any) -> set[tuple[str, str]]:
    return {(f["field"], f["rule"]) for f in response.get_json()["error"]["fields"]}


def delivery_of(client: FlaskClient, auth: dict[str, str], notification_id: str) -> dict[str, Any]:
    body = client.get(f"/api/v1/notifications/{notification_id}", headers=auth).get_json()
    return body["deliveries"][0]


def wait_delivery(
    client: FlaskClient,
    auth: dict[str, str],
    notification_id: str,
    status: str,
    timeout: float = 30,
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        delivery = delivery_of(client, auth, notification_id)
        return delivery if delivery["status"] == status else None

    return wait_for(reached, timeout, 0.1, f"delivery {status}")  # type: ignore[return-value]
