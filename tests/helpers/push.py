"""PUSH through the in-process API: registering devices, submitting pushes, waiting for their
delivery, and the devices' states as stored."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.helpers.api import post, wait_delivery

APNS_TOKEN = "ab" * 32
FCM_TOKEN = "fcm-token-0123456789:APA91bHunUUrE3m6"


def register(
    client: FlaskClient,
    auth: dict[str, str],
    user: str,
    token: str,
    platform: str = "fcm",
    **more: Any,
) -> Any:
    body = {"token": token, "platform": platform, "appId": "com.example.app", **more}
    return client.put(f"/api/v1/users/{user}/devices", json=body, headers=auth)


def push(client: FlaskClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"channels": ["PUSH"], "subject": "Hello", "body": "Your order shipped", **fields}
    response = post(client, auth, body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def wait_push(
    client: FlaskClient,
    auth: dict[str, str],
    notification_id: str,
    status: str,
    timeout: float = 30,
) -> dict[str, Any]:
    """The notification's PUSH delivery once it reached ``status``."""
    return wait_delivery(client, auth, notification_id, status, timeout, channel="PUSH")


def device_states(engine: Engine) -> dict[str, tuple[bool, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT token, active, deactivation_reason FROM push_device"))
        return {r.token: (r.active, r.deactivation_reason) for r in rows}
