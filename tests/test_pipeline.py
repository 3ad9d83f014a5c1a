"""End to end through real processes: API → PostgreSQL → relay → Redis → Celery worker → SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.core.settings import Settings
from app.core.wake import wake_relay
from tests.helpers.api import SEED, delivery_of, post, wait_delivery
from tests.helpers.db import audit_trail, status_counts
from tests.helpers.factories import insert_backlog
from tests.helpers.processes import Processes, wait_for
from tests.standins.smtp import STALL, SmtpStandIn


def test_seed_request_arrives_at_the_smtp_server_and_reads_back_sent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    settings: Settings,
) -> None:
    processes.relay()
    processes.worker()

    created = post(client, auth, SEED).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    [received] = smtp.to("user@example.com")
    assert received.message["Subject"] == "Test Notification"
    assert received.message.get_content().strip() == "This is a test"
    assert received.message["From"] == settings.smtp_from
    assert received.message["Message-ID"] == f"<{delivery['id']}@localhost>"
    assert delivery["providerMessageId"] == received.message["Message-ID"]
    assert delivery["attempts"] == 1
    assert (
        client.get(f"/api/v1/notifications/{created['id']}", headers=auth).get_json()["status"]
        == "SENT"
    )


def test_html_body_is_sent_as_a_multipart_alternative(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    processes.relay()
    processes.worker()

    created = post(client, auth, {**SEED, "htmlBody": "<p>This is a <b>test</b></p>"}).get_json()
    wait_delivery(client, auth, created["id"], "SENT")

    [received] = smtp.to("user@example.com")
    assert received.message.get_content_type() == "multipart/alternative"
    assert "<b>test</b>" in received.message.get_body(("html",)).get_content()
    assert received.message.get_body(("plain",)).get_content().strip() == "This is a test"


def test_smtp_451_twice_then_250_is_sent_on_the_third_attempt(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
) -> None:
    smtp.plan("greylisted@example.com", 451, 451)
    processes.relay()
    processes.worker()

    created = post(client, auth, {**SEED, "recipientEmail": "greylisted@example.com"}).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 3
    assert smtp.rcpt_attempts["greylisted@example.com"] == 3
    assert len(smtp.to("greylisted@example.com")) == 1
    assert audit_trail(engine, delivery["id"]) == [
        ("PENDING", "QUEUED", 0, None),
        ("QUEUED", "SENDING", 1, None),
        ("SENDING", "RETRYING", 1, "smtp_4xx"),
        ("RETRYING", "SENDING", 2, "smtp_4xx"),
        ("SENDING", "RETRYING", 2, "smtp_4xx"),
        ("RETRYING", "SENDING", 3, "smtp_4xx"),
        ("SENDING", "SENT", 3, None),
    ]


def test_smtp_550_fails_at_once_with_the_reason(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    smtp.plan("nobody@example.com", 550)
    processes.relay()
    processes.worker()

    created = post(client, auth, {**SEED, "recipientEmail": "nobody@example.com"}).get_json()
    delivery = wait_delivery(client, auth, created["id"], "FAILED")

    assert delivery["attempts"] == 1
    assert delivery["errorCode"] == "smtp_550"
    assert "550" in delivery["lastError"] and "no such mailbox" in delivery["lastError"]
    assert smtp.rcpt_attempts["nobody@example.com"] == 1
    assert smtp.to("nobody@example.com") == []


def test_send_at_in_the_future_is_not_sent_before_its_time(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    processes.relay()
    processes.worker()
    send_at = datetime.now(UTC) + timedelta(seconds=3)

    created = post(client, auth, {**SEED, "sendAt": send_at.isoformat()}).get_json()
    wait_for(lambda: datetime.now(UTC) > send_at - timedelta(seconds=1), 5)
    early = delivery_of(client, auth, created["id"])
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert early["status"] == "PENDING"
    assert datetime.fromisoformat(delivery["sentAt"]) >= send_at
    assert len(smtp.to("user@example.com")) == 1


def test_expires_at_in_the_past_ends_expired_and_is_never_sent(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    processes.relay()
    processes.worker()
    expired = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()

    created = post(client, auth, {**SEED, "expiresAt": expired}).get_json()
    delivery = wait_delivery(client, auth, created["id"], "EXPIRED")

    assert delivery["errorCode"] == "expired"
    assert smtp.rcpt_attempts["user@example.com"] == 0
    assert (
        client.get(f"/api/v1/notifications/{created['id']}", headers=auth).get_json()["status"]
        == "EXPIRED"
    )


def test_cancelled_scheduled_notification_is_never_sent(
    client: FlaskClient, auth: dict[str, str], processes: Processes, smtp: SmtpStandIn
) -> None:
    processes.relay()
    processes.worker()
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    scheduled = {**SEED, "sendAt": send_at.isoformat()}
    created = post(client, auth, scheduled).get_json()
    # The control: its twin on the same schedule, not cancelled, is sent. Without it, scheduling
    # that never sends anything would pass this test.
    twin = post(client, auth, {**scheduled, "recipientEmail": "twin@example.com"}).get_json()

    cancel = client.post(f"/api/v1/notifications/{created['id']}/cancel", headers=auth)
    wait_for(lambda: datetime.now(UTC) > send_at + timedelta(seconds=2), 5)
    twin_delivery = wait_delivery(client, auth, twin["id"], "SENT", timeout=10)

    assert cancel.status_code == 200
    assert datetime.fromisoformat(twin_delivery["sentAt"]) >= send_at
    assert len(smtp.to("twin@example.com")) == 1
    assert delivery_of(client, auth, created["id"])["status"] == "CANCELLED"
    assert smtp.rcpt_attempts["user@example.com"] == 0


def test_redis_flushed_after_dispatch_the_sweeper_redrives_everything(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
    redis_client: Any,
) -> None:
    processes.relay(SWEEPER_LEASE_SECONDS="2")
    recipients = [f"flushed{i}@example.com" for i in range(20)]
    for recipient in recipients:
        post(client, auth, {**SEED, "recipientEmail": recipient})
    wait_for(lambda: status_counts(engine) == {"QUEUED": 20}, what="all 20 dispatched")

    redis_client.flushdb()
    processes.worker()

    wait_for(lambda: status_counts(engine) == {"SENT": 20}, timeout=30, what="all 20 sent")
    assert smtp.count_by_recipient() == {r: 1 for r in recipients}


def test_worker_killed_mid_send_loses_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
) -> None:
    smtp.plan("hung@example.com", STALL)
    processes.relay(SWEEPER_LEASE_SECONDS="2")
    doomed = processes.worker()
    created = post(client, auth, {**SEED, "recipientEmail": "hung@example.com"}).get_json()
    wait_for(lambda: smtp.rcpt_attempts["hung@example.com"] == 1, what="the send to start")

    doomed.kill()
    processes.worker()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 2
    assert len(smtp.to("hung@example.com")) == 1
    assert ("SENDING", "RETRYING", 1, "worker_lost") in audit_trail(engine, delivery["id"])


def test_chunked_task_retries_only_the_failed_delivery(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    engine: Engine,
) -> None:
    recipients = [f"chunk{i}@example.com" for i in range(5)]
    smtp.plan("chunk2@example.com", 451)
    processes.worker()
    for recipient in recipients:
        post(client, auth, {**SEED, "recipientEmail": recipient})

    # Started after the five are committed, so one claim holds them all: one task of five.
    relay = processes.relay(RELAY_TASK_CHUNK="5")
    wait_for(lambda: status_counts(engine) == {"SENT": 5}, what="all five sent")

    assert smtp.count_by_recipient() == {r: 1 for r in recipients}
    assert smtp.rcpt_attempts["chunk2@example.com"] == 2
    assert all(smtp.rcpt_attempts[r] == 1 for r in recipients if r != "chunk2@example.com")
    with engine.connect() as conn:
        tasks = conn.scalar(text("SELECT count(DISTINCT dispatched_at) FROM outbox_event"))
    assert tasks == 1
    assert "relay cycle failed" not in relay.log()


def test_relay_and_worker_carry_on_when_their_database_connections_are_cut(
    processes: Processes, engine: Engine, redis_client: redis.Redis, smtp: SmtpStandIn
) -> None:
    relay = processes.relay(RELAY_POLL_INTERVAL_MS="60000", SWEEPER_INTERVAL_SECONDS="600")
    worker = processes.worker()
    insert_backlog(engine, 1, prefix="before")
    wake_relay(redis_client)
    wait_for(lambda: status_counts(engine) == {"SENT": 1}, what="the first delivery")

    # What a PostgreSQL restart does to every pooled connection of the relay and the worker,
    # which check out connections without pinging them first.
    with engine.connect() as conn:
        cut = conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        )
    assert cut >= 2
    insert_backlog(engine, 1, prefix="after")
    wake_relay(redis_client)

    # Long before the sweeper's lease would re-drive a delivery whose task failed.
    wait_for(lambda: status_counts(engine) == {"SENT": 2}, timeout=15, what="the second")
    assert "relay cycle failed" not in relay.log()
    assert "Traceback" not in worker.log()
    assert smtp.count_by_recipient() == {"before1@example.com": 1, "after1@example.com": 1}
