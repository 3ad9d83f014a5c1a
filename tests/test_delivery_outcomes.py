"""Per-message outcomes: one message's trouble is its own outcome, never its chunk's; whatever a
receiver sends back can be recorded; each outcome is durable as soon as it is known; a chunk that
is still being sent is not re-driven by the sweeper; a SENT delivery shows no earlier error."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.core.domain import Channel
from app.core.settings import Settings
from app.store.deliveries import DeliveryResult
from tasks.deliver import WorkerContext, deliver_ids
from tests.helpers.factories import make_api_key, make_notification
from tests.helpers.processes import Processes, wait_for
from tests.helpers.push import push, register, wait_push
from tests.standins.fcm import FcmStandIn, live_fcm
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import Reply, WebhookReceiver, live_webhook


def deliver(settings: Settings, ids: list[uuid.UUID]) -> list[DeliveryResult]:
    """One task of the worker, run in this process: the ids are one chunk."""
    context = WorkerContext.build(settings)
    try:
        return deliver_ids(context, [str(i) for i in ids])
    finally:
        context.close()


def webhooks(engine: Engine, receiver: WebhookReceiver, count: int, **fields: Any) -> list[Any]:
    """``count`` queued WEBHOOK deliveries to ``/hook<i>`` of the receiver, one key for all."""
    key = make_api_key(engine, "hooks")
    return [
        make_notification(
            engine,
            channels=[Channel.WEBHOOK],
            status="QUEUED",
            api_key_id=key.id,
            webhook_url=f"{receiver.url}/hook{i}",
            **fields,
        )
        for i in range(count)
    ]


def rows(engine: Engine, ids: list[uuid.UUID]) -> list[Any]:
    with engine.connect() as conn:
        found = {
            row.id: row
            for row in conn.execute(
                text(
                    "SELECT id, status, error_code, last_error, attempts FROM delivery"
                    " WHERE id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [str(i) for i in ids]},
            )
        }
    return [found[i] for i in ids]


def test_a_receiver_error_holding_a_nul_byte_is_recorded_and_the_chunk_is_sent_once(
    settings: Settings, engine: Engine, receiver: WebhookReceiver
) -> None:
    settings = live_webhook(settings)
    made = webhooks(engine, receiver, 10)
    receiver.plan("/hook4", Reply(500, body=b"broken\x00reply \xff\xfe from the receiver"))
    ids = [m.deliveries[Channel.WEBHOOK] for m in made]

    deliver(settings, ids)

    recorded = rows(engine, ids)
    assert [r.status for r in recorded] == ["SENT"] * 4 + ["RETRYING"] + ["SENT"] * 5
    poisoned = recorded[4]
    assert poisoned.error_code == "webhook_http_500"
    assert "broken" in poisoned.last_error and "\x00" not in poisoned.last_error
    assert [len(receiver.to(f"/hook{i}")) for i in range(10)] == [1] * 10


def test_an_fcm_error_holding_a_nul_byte_is_recorded_and_the_other_device_is_not_sent_again(
    settings: Settings,
    client: FlaskClient,
    auth: dict[str, str],
    fcm: FcmStandIn,
    tmp_path: Path,
) -> None:
    token, other = "fcm-token-A:APA91bH" + "x" * 40, "fcm-token-B:APA91bH" + "y" * 40
    register(client, auth, "ana", token)
    register(client, auth, "ana", other)
    fcm.plan(token, "internal_nul")
    processes = Processes(live_fcm(settings, fcm), tmp_path)
    try:
        processes.relay()
        processes.worker("push")
        delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")
    finally:
        processes.stop_all()

    assert (len(fcm.to(token)), len(fcm.to(other))) == (2, 1)
    assert [(d["status"], d["attempts"]) for d in delivery["devices"]] == [("SENT", 2), ("SENT", 1)]


def test_an_answer_the_webhook_client_cannot_decode_is_only_its_own_messages_outcome(
    settings: Settings, engine: Engine, receiver: WebhookReceiver
) -> None:
    settings = live_webhook(settings)
    made = webhooks(engine, receiver, 10)
    # The receiver accepted (200) but its body claims gzip and is not: the body cannot be read.
    receiver.plan(
        "/hook3", Reply(200, body=b"not gzip at all", headers=(("Content-Encoding", "gzip"),))
    )
    ids = [m.deliveries[Channel.WEBHOOK] for m in made]

    to_retry = deliver(settings, ids)

    assert to_retry == []
    assert [r.status for r in rows(engine, ids)] == ["SENT"] * 10
    assert [len(receiver.to(f"/hook{i}")) for i in range(10)] == [1] * 10


def test_an_email_the_mail_library_refuses_fails_alone_and_the_rest_of_its_chunk_is_sent(
    settings: Settings, engine: Engine, smtp: SmtpStandIn
) -> None:
    key = make_api_key(engine, "mail")
    made = [
        make_notification(
            engine,
            status="QUEUED",
            api_key_id=key.id,
            recipient_email=f"reader{i}@example.com",
            # A line break in a header: the email library refuses to build this one message.
            subject="line\nbreak" if i == 2 else f"Issue {i}",
        )
        for i in range(5)
    ]
    ids = [m.deliveries[Channel.EMAIL] for m in made]

    to_retry = deliver(settings, ids)

    recorded = rows(engine, ids)
    assert [r.status for r in recorded] == ["SENT", "SENT", "FAILED", "SENT", "SENT"], recorded
    assert recorded[2].error_code == "message_refused"
    assert "linefeed" in recorded[2].last_error
    assert to_retry == []
    counts = smtp.count_by_recipient()
    assert [counts[f"reader{i}@example.com"] for i in range(5)] == [1, 1, 0, 1, 1]


def test_each_outcome_is_recorded_before_the_next_message_of_the_chunk_is_sent(
    settings: Settings, engine: Engine, receiver: WebhookReceiver
) -> None:
    settings = live_webhook(settings)
    made = webhooks(engine, receiver, 3)
    receiver.plan("/hook1", Reply(200, delay=1.0))
    ids = [m.deliveries[Channel.WEBHOOK] for m in made]
    task = threading.Thread(target=deliver, args=(settings, ids))
    task.start()
    try:
        wait_for(lambda: receiver.to("/hook1"), timeout=10, what="the second POST")
        # The second message is in flight: the first one's outcome must already be durable.
        first, second, third = rows(engine, ids)
    finally:
        task.join(15)
    assert (first.status, second.status, third.status) == ("SENT", "SENDING", "SENDING")
    assert [r.status for r in rows(engine, ids)] == ["SENT"] * 3


def test_a_sent_delivery_shows_no_error_from_an_earlier_attempt(
    settings: Settings, engine: Engine, receiver: WebhookReceiver, client: FlaskClient
) -> None:
    settings = live_webhook(settings)
    key = make_api_key(engine, "retried")
    made = make_notification(
        engine,
        channels=[Channel.WEBHOOK],
        status="QUEUED",
        api_key_id=key.id,
        webhook_url=f"{receiver.url}/flaky",
    )
    receiver.plan("/flaky", 503)
    delivery_id = made.deliveries[Channel.WEBHOOK]

    [retry] = deliver(settings, [delivery_id])
    assert retry.error_code == "webhook_http_503"
    assert deliver(settings, [delivery_id]) == []

    [row] = rows(engine, [delivery_id])
    assert (row.status, row.attempts, row.error_code, row.last_error) == ("SENT", 2, None, None)
    shown = client.get(
        f"/api/v1/notifications/{made.id}", headers={"Authorization": f"Bearer {key.key}"}
    )
    [delivery] = shown.get_json()["deliveries"]
    assert (delivery["status"], delivery["errorCode"], delivery["lastError"]) == (
        "SENT",
        None,
        None,
    )


def test_a_chunk_that_takes_longer_than_the_sweeper_lease_is_not_sent_twice(
    settings: Settings, engine: Engine, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    settings = replace(
        live_webhook(settings),
        sweeper_lease_seconds=1,
        sweeper_interval_seconds=0.2,
        relay_task_chunk=4,
        webhook_read_timeout_seconds=5.0,
    )
    key = make_api_key(engine, "slow")
    ids = []
    for i in range(4):
        receiver.plan(f"/slow{i}", Reply(200, delay=0.8))
        made = make_notification(
            engine,
            channels=[Channel.WEBHOOK],
            api_key_id=key.id,
            webhook_url=f"{receiver.url}/slow{i}",
        )
        ids.append(made.deliveries[Channel.WEBHOOK])
    processes = Processes(settings, tmp_path)
    try:
        processes.worker("webhook")
        began = time.monotonic()
        processes.relay()  # claims the four due rows together: one task of four, 3.2 s to send
        wait_for(
            lambda: all(r.status == "SENT" for r in rows(engine, ids)),
            timeout=20,
            what="every slow webhook SENT",
        )
        took = time.monotonic() - began
        time.sleep(1.5)  # long enough for a re-driven copy to be claimed and sent
    finally:
        processes.stop_all()
    assert took > 2 * settings.sweeper_lease_seconds
    assert [len(receiver.to(f"/slow{i}")) for i in range(4)] == [1] * 4
    with engine.connect() as conn:
        lost = conn.scalar(text("SELECT count(*) FROM audit_log WHERE error_code = 'worker_lost'"))
    assert lost == 0
