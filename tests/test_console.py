"""The operator console's API: search by what an operator knows, one notification's history,
retry now through the outbox (audited), and the header's figures; admin scope, one project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.keys import SCOPES
from app.core.domain import Channel
from tests.helpers.factories import make_api_key, make_notification

CONSOLE = "/api/v1/console"


@pytest.fixture
def admin(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_api_key(engine, 'ops', SCOPES).key}"}


def found_ids(client: FlaskClient, admin: dict[str, str], **query: Any) -> list[str]:
    response = client.get(f"{CONSOLE}/notifications", query_string=query, headers=admin)
    assert response.status_code == 200, response.get_json()
    return [n["id"] for n in response.get_json()["items"]]


def test_search_finds_by_id_user_recipient_status_channel_and_time(
    client: FlaskClient, admin: dict[str, str], engine: Engine
) -> None:
    ana = make_notification(engine, recipient_email="Ana@Example.com", user_id="ana")
    bob = make_notification(
        engine,
        channels=[Channel.SMS],
        status="FAILED",
        recipient_email=None,
        subject=None,
        recipient_phone="+15550001111",
        user_id="bob",
    )
    a, b = str(ana.id), str(bob.id)
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()

    assert found_ids(client, admin) == [b, a]
    assert found_ids(client, admin, id=a) == [a]
    assert found_ids(client, admin, user_id="bob") == [b]
    assert found_ids(client, admin, recipient="ana@example.com") == [a]
    assert found_ids(client, admin, recipient="+15550001111") == [b]
    assert found_ids(client, admin, status="FAILED") == [b]
    assert found_ids(client, admin, channel="EMAIL") == [a]
    assert found_ids(client, admin, created_after=later) == []
    assert found_ids(client, admin, created_before=later, user_id="ana") == [a]
    bad = client.get(f"{CONSOLE}/notifications?id=1234&user_id=a%20b", headers=admin)
    assert bad.status_code == 422
    assert {f["field"] for f in bad.get_json()["error"]["fields"]} == {"id", "user_id"}


def test_history_shows_content_deliveries_and_every_status_change(
    client: FlaskClient, admin: dict[str, str], engine: Engine
) -> None:
    made = make_notification(engine, subject="Order 1234 shipped", user_id="ana")
    delivery = made.deliveries[Channel.EMAIL]
    with engine.begin() as conn:
        for status in ("QUEUED", "SENDING", "FAILED"):
            conn.execute(
                text(
                    "UPDATE delivery SET status = :s, attempts = 1, error_code = 'smtp_5xx'"
                    " WHERE id = :id"
                ),
                {"s": status, "id": delivery},
            )

    response = client.get(f"{CONSOLE}/notifications/{made.id}", headers=admin)

    assert response.status_code == 200
    history = response.get_json()
    assert history["content"]["subject"] == "Order 1234 shipped"
    assert history["content"]["userId"] == "ana"
    assert [d["status"] for d in history["notification"]["deliveries"]] == ["FAILED"]
    assert [(t["fromStatus"], t["toStatus"]) for t in history["timeline"]] == [
        ("PENDING", "QUEUED"),
        ("QUEUED", "SENDING"),
        ("SENDING", "FAILED"),
    ]
    assert history["timeline"][-1]["errorCode"] == "smtp_5xx"
    missing = client.get(f"{CONSOLE}/notifications/{delivery}", headers=admin)
    assert missing.status_code == 404


def test_retry_now_requeues_a_failed_delivery_through_the_outbox_and_audits_it(
    client: FlaskClient, admin: dict[str, str], engine: Engine
) -> None:
    made = make_notification(engine, status="FAILED")
    delivery = made.deliveries[Channel.EMAIL]

    response = client.post(f"{CONSOLE}/deliveries/{delivery}/retry", headers=admin)

    assert response.status_code == 200
    shown = response.get_json()
    assert [d["status"] for d in shown["notification"]["deliveries"]] == ["RETRYING"]
    assert shown["timeline"][-1]["fromStatus"] == "FAILED"
    assert shown["timeline"][-1]["errorCode"] == "operator_retry"
    assert "retried now by an operator" in shown["timeline"][-1]["error"]
    with engine.connect() as conn:
        pending = conn.execute(
            text(
                "SELECT count(*) FROM outbox_event WHERE delivery_id = :id AND status = 'PENDING'"
            ),
            {"id": delivery},
        ).scalar()
    assert pending == 1


def test_retry_refuses_what_is_not_failed_or_retrying_and_other_projects_deliveries(
    client: FlaskClient, admin: dict[str, str], engine: Engine
) -> None:
    sent = make_notification(engine, status="SENT").deliveries[Channel.EMAIL]
    failed = make_notification(engine, status="FAILED").deliveries[Channel.EMAIL]
    other = make_api_key(engine, "other", SCOPES, project_id="other")

    not_retryable = client.post(f"{CONSOLE}/deliveries/{sent}/retry", headers=admin)
    not_theirs = client.post(
        f"{CONSOLE}/deliveries/{failed}/retry",
        headers={"Authorization": f"Bearer {other.key}"},
    )

    assert not_retryable.status_code == 409
    assert not_retryable.get_json()["error"]["code"] == "not_retryable"
    assert not_theirs.status_code == 404
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM delivery ORDER BY status")).scalars()
        outbox = conn.execute(text("SELECT count(*) FROM outbox_event WHERE status = 'PENDING'"))
        assert (list(statuses), outbox.scalar()) == (["FAILED", "SENT"], 0)


def test_console_routes_need_the_admin_scope(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    delivery = make_notification(engine, status="FAILED").deliveries[Channel.EMAIL]

    for method, path in [
        ("GET", f"{CONSOLE}/notifications"),
        ("GET", f"{CONSOLE}/summary"),
        ("POST", f"{CONSOLE}/deliveries/{delivery}/retry"),
    ]:
        response = client.open(path, method=method, headers=auth)  # send and read, no admin
        assert response.status_code == 403, path
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM delivery")).scalar() == "FAILED"


def test_summary_counts_the_last_minute_and_reads_the_queues(
    client: FlaskClient, admin: dict[str, str], engine: Engine
) -> None:
    made = make_notification(
        engine, channels=[Channel.EMAIL, Channel.SMS], recipient_phone="+15550001111"
    )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE delivery SET status = 'SENT' WHERE id = :id"),
            {"id": made.deliveries[Channel.EMAIL]},
        )
        conn.execute(
            text("UPDATE delivery SET status = 'FAILED' WHERE id = :id"),
            {"id": made.deliveries[Channel.SMS]},
        )

    summary = client.get(f"{CONSOLE}/summary", headers=admin).get_json()

    assert summary["lastMinute"] == {"sent": 1, "failed": 1}
    assert set(summary["queueDepths"]) == {"email", "push", "sms", "webhook", "inapp"}
    assert all(isinstance(depth, int) for depth in summary["queueDepths"].values())
    assert summary["outboxLagSeconds"] >= 0


def test_the_console_page_is_served_with_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/console")

    assert page.status_code == 200 and "/console/static/console.js" in page.text
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]


def test_history_of_a_templated_notification_shows_it_without_a_body_of_its_own(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    template = {
        "channels": {"EMAIL": {"subject": "Order {{ data.orderId }}", "text": "On its way"}}
    }
    assert client.put("/api/v1/templates/order", json=template, headers=admin).status_code == 201
    created = client.post(
        "/api/v1/notifications",
        json={
            "template": "order",
            "channels": ["EMAIL"],
            "recipientEmail": "ana@example.com",
            "data": {"orderId": 7},
        },
        headers=admin,
    )
    assert created.status_code == 202, created.get_json()

    history = client.get(f"{CONSOLE}/notifications/{created.get_json()['id']}", headers=admin)

    assert history.status_code == 200, history.get_json()
    assert history.get_json()["content"]["body"] is None
