"""Profiles, preferences and the claim that judges them, as several recipient tests use them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.store import deliveries

MARKETING = {
    "type": "MARKETING",
    "priority": "NORMAL",
    "userId": "ana",
    "subject": "News",
    "body": "Hello",
    "channels": ["EMAIL"],
}


def submit(client: FlaskClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, str]:
    """Accept ``body`` through the API; each channel's delivery id (and ``id``: the
    notification's)."""
    response = client.post("/api/v1/notifications", json=body, headers=auth)
    assert response.status_code == 202, response.get_json()
    created = response.get_json()
    return {"id": created["id"], **{d["channel"]: d["id"] for d in created["deliveries"]}}


def claim(engine: Engine, delivery_id: str, at: datetime | None = None) -> Any:
    """The worker's claim of one delivery (the statement that judges consent); its row."""
    with engine.begin() as conn:
        [row] = deliveries.claim_for_sending(conn, [delivery_id], 60, at=at)
    return row


def delivery_row(engine: Engine, delivery_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT status, error_code, attempts, next_attempt_at, address FROM delivery"
                " WHERE id = :id"
            ),
            {"id": delivery_id},
        ).one()
