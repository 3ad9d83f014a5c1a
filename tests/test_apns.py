"""PUSH to APNs devices: end to end through the worker to an HTTP/2 APNs stand-in over TLS, and
the provider token's lifetime with an injected clock."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.domain import Channel, NotificationType, Priority, PushPlatform
from app.core.settings import Settings
from tasks.channels.apns import ApnsSender
from tasks.channels.base import InvalidRecipient, Message, Outcome, Retryable, Sent
from tasks.channels.push import Device
from tests.helpers.db import audit_trail
from tests.helpers.processes import Processes
from tests.helpers.push import device_states, push, register, wait_push
from tests.standins.apns import ApnsStandIn, live_apns
from tests.standins.fcm import FcmStandIn, live_fcm

TOKEN = "a1" * 32
OTHER = "b2" * 32
BUNDLE = "com.example.shop"


@pytest.fixture
def settings(settings: Settings, apns: ApnsStandIn) -> Settings:
    return live_apns(settings, apns)


def test_apns_push_sends_the_exact_request_apns_expects_over_http2(
    client: FlaskClient, auth: dict[str, str], processes: Processes, apns: ApnsStandIn
) -> None:
    device = register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE).get_json()
    processes.relay()
    worker = processes.worker("push")

    created = push(client, auth, userId="ana", priority="HIGH", data={"orderId": 42})
    delivery = wait_push(client, auth, created["id"], "SENT")

    assert apns.rejected == []
    [request] = apns.received
    assert request.http_version == "2"
    assert request.token == TOKEN
    assert request.jwt_header == {"alg": "ES256", "kid": apns.key.key_id, "typ": "JWT"}
    assert request.jwt_claims["iss"] == apns.key.team_id
    assert abs(request.jwt_claims["iat"] - time.time()) < 60
    assert request.headers["apns-topic"] == BUNDLE
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.body == {
        "aps": {"alert": {"title": "Hello", "body": "Your order shipped"}},
        "orderId": 42,
        "notificationId": created["id"],
    }
    [result] = delivery["devices"]
    assert (result["deviceId"], result["status"]) == (device["id"], "SENT")
    assert result["providerMessageId"] == request.headers["apns-id"]
    assert delivery["providerMessageId"] == request.headers["apns-id"]
    assert TOKEN not in worker.log()


def test_apns_low_priority_is_sent_power_considerate(
    client: FlaskClient, auth: dict[str, str], processes: Processes, apns: ApnsStandIn
) -> None:
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    processes.relay()
    processes.worker("push")

    wait_push(client, auth, push(client, auth, userId="ana", priority="LOW")["id"], "SENT")

    assert [r.headers["apns-priority"] for r in apns.received] == ["5"]


def test_apns_worker_multiplexes_concurrent_pushes_over_one_connection_with_one_token(
    client: FlaskClient, auth: dict[str, str], processes: Processes, apns: ApnsStandIn
) -> None:
    tokens = [f"{i:02x}" * 32 for i in range(6)]
    for index, token in enumerate(tokens):
        register(client, auth, f"user{index}", token, "apns", appId=BUNDLE)
        apns.plan(token, "slow")
    processes.worker("push", WORKER_CONCURRENCY="6")
    ids = [push(client, auth, userId=f"user{i}")["id"] for i in range(len(tokens))]

    # Started after all six are committed; one task each, so six tasks share the connection.
    processes.relay(RELAY_TASK_CHUNK="1")
    for notification_id in ids:
        wait_push(client, auth, notification_id, "SENT")

    assert len(apns.received) == 6
    assert len({r.connection for r in apns.received}) == 1
    assert apns.max_in_flight >= 2
    assert len({r.headers["authorization"] for r in apns.received}) == 1


@pytest.mark.parametrize(
    ("answer", "code"),
    [("bad_token", "apns:BadDeviceToken"), ("unregistered", "apns:Unregistered")],
)
def test_apns_dead_token_is_deactivated_and_never_tried_again(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    apns: ApnsStandIn,
    engine: Engine,
    answer: str,
    code: str,
) -> None:
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    register(client, auth, "ana", OTHER, "apns", appId=BUNDLE)
    apns.plan(TOKEN, answer)
    processes.relay()
    processes.worker("push")

    first = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")
    second = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")

    assert [(d["status"], d["errorCode"]) for d in first["devices"]] == [
        ("INVALID", code),
        ("SENT", None),
    ]
    assert [d["tokenPrefix"] for d in second["devices"]] == [OTHER[:8]]
    assert len(apns.to(TOKEN)) == 1 and len(apns.to(OTHER)) == 2
    assert device_states(engine)[TOKEN] == (False, code)


def test_apns_every_device_dead_fails_the_delivery_with_apns_reason(
    client: FlaskClient, auth: dict[str, str], processes: Processes, apns: ApnsStandIn
) -> None:
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    apns.plan(TOKEN, "unregistered")
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "FAILED")

    assert (delivery["errorCode"], delivery["attempts"]) == ("apns:Unregistered", 1)
    assert "410" in delivery["lastError"] and TOKEN not in delivery["lastError"]


def test_apns_token_not_for_topic_fails_permanently_and_keeps_the_device(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    apns: ApnsStandIn,
    engine: Engine,
) -> None:
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    apns.plan(TOKEN, "not_for_topic")
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "FAILED")

    assert (delivery["errorCode"], delivery["attempts"]) == ("apns:DeviceTokenNotForTopic", 1)
    assert device_states(engine)[TOKEN] == (True, None)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("too_many", "apns:TooManyRequests"),
        ("unavailable", "apns:ServiceUnavailable"),
        ("internal", "apns:InternalServerError"),
    ],
)
def test_apns_transient_error_is_retried_then_sent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    apns: ApnsStandIn,
    engine: Engine,
    answer: str,
    code: str,
) -> None:
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    apns.plan(TOKEN, answer)
    processes.relay()
    processes.worker("push")

    created = push(client, auth, userId="ana")
    delivery = wait_push(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 2
    assert [(d["status"], d["attempts"]) for d in delivery["devices"]] == [("SENT", 2)]
    assert ("SENDING", "RETRYING", 1, code) in audit_trail(engine, delivery["id"])
    assert len(apns.to(TOKEN)) == 2
    # The same apns-id on both attempts: one push, tried twice.
    assert len({r.headers["apns-id"] for r in apns.to(TOKEN)}) == 1


def test_user_with_an_fcm_and_an_apns_device_gets_the_push_on_both(
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
    settings: Settings,
    apns: ApnsStandIn,
    fcm: FcmStandIn,
) -> None:
    fcm_token = "fcm-token-ana:APA91b" + "z" * 30
    register(client, auth, "ana", fcm_token, "fcm", appId="1:123:android:abc")
    register(client, auth, "ana", TOKEN, "apns", appId=BUNDLE)
    both = Processes(live_fcm(settings, fcm), tmp_path)
    try:
        both.relay()
        both.worker("push")

        delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")
    finally:
        both.stop_all()

    assert [(d["platform"], d["status"]) for d in delivery["devices"]] == [
        ("fcm", "SENT"),
        ("apns", "SENT"),
    ]
    assert [r.token for r in fcm.received] == [fcm_token]
    assert [r.token for r in apns.received] == [TOKEN]
    assert delivery["devices"][0]["providerMessageId"].startswith("projects/test-project/")
    assert delivery["devices"][1]["providerMessageId"] == apns.received[0].headers["apns-id"]


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _message() -> Message:
    return Message(
        delivery_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        project_id="default",
        channel=Channel.PUSH,
        attempt=1,
        type=NotificationType.TRANSACTIONAL,
        priority=Priority.NORMAL,
        created_at=datetime.now(UTC),
        body="hi",
    )


def _device(token: str = TOKEN) -> Device:
    return Device(uuid.uuid4(), PushPlatform.APNS, token, BUNDLE, None)


def test_apns_provider_token_is_reused_until_the_refresh_age_then_renewed(
    settings: Settings, apns: ApnsStandIn
) -> None:
    clock = FakeClock(time.time() - 3000)  # tokens stay within APNs's one hour throughout
    sender = ApnsSender(settings, clock=clock)
    try:
        sender.send(_message(), [_device()])
        clock.now += settings.apns_token_refresh_seconds - 1
        sender.send(_message(), [_device()])
        clock.now += 1
        sender.send(_message(), [_device()])
        sender.send(_message(), [_device()])
    finally:
        sender.close()

    tokens = [r.headers["authorization"] for r in apns.received]
    issued = [r.jwt_claims["iat"] for r in apns.received]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]
    assert issued[2] - issued[0] == settings.apns_token_refresh_seconds
    assert len({r.connection for r in apns.received}) == 1
    assert apns.rejected == []


def test_apns_expired_provider_token_is_renewed_for_the_retry(
    settings: Settings, apns: ApnsStandIn
) -> None:
    sender = ApnsSender(settings, clock=FakeClock(time.time()))
    apns.plan(TOKEN, "expired_provider_token")
    try:
        first = sender.send(_message(), [_device()])
        second = sender.send(_message(), [_device()])
    finally:
        sender.close()

    assert first == [Retryable("apns:ExpiredProviderToken", "APNs 403 ExpiredProviderToken")]
    assert isinstance(second[0], Sent)
    before, after = apns.to(TOKEN)
    assert before.headers["authorization"] != after.headers["authorization"]


def test_apns_sender_outcomes_per_device_in_order(settings: Settings, apns: ApnsStandIn) -> None:
    sender = ApnsSender(settings)
    apns.plan(OTHER, "bad_token")
    try:
        outcomes = sender.send(_message(), [_device(TOKEN), _device(OTHER)])
    finally:
        sender.close()

    assert isinstance(outcomes[0], Sent)
    assert outcomes[1] == InvalidRecipient("apns:BadDeviceToken", "APNs 400 BadDeviceToken")


def test_apns_sender_shared_by_many_threads_sends_each_push_exactly_once(
    settings: Settings, apns: ApnsStandIn
) -> None:
    # A worker's threads all send over the process's one HTTP/2 connection. httpcore's sync
    # HTTP/2 does not serialise stream-id allocation with the HEADERS frame (nor HPACK state), so
    # threads sharing an httpx.Client broke the connection and every stream on it was retried:
    # the same push reached APNs twice (seen in CI as 12 requests for 6 pushes).
    threads, per_thread = 12, 8
    tokens = [f"{i:02x}" * 32 for i in range(threads * per_thread)]
    for token in tokens[::4]:
        apns.plan(token, "slow")
    sender = ApnsSender(settings)
    start = threading.Barrier(threads)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave at nearly every bytecode: races show
    outcomes: list[Outcome] = []

    def send_mine(index: int) -> None:
        start.wait()
        for token in tokens[index::threads]:
            outcomes.extend(sender.send(_message(), [_device(token)]))

    pool = [threading.Thread(target=send_mine, args=(i,)) for i in range(threads)]
    try:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(switch_interval)
        sender.close()

    assert [o for o in outcomes if not isinstance(o, Sent)] == []
    assert len(outcomes) == len(tokens)
    assert sorted(r.token for r in apns.received) == sorted(tokens)
    assert len({r.connection for r in apns.received}) == 1
    assert apns.max_in_flight >= 2
    assert apns.rejected == []
