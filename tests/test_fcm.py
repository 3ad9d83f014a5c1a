"""PUSH to FCM devices end to end: API → relay → worker → pyfcm → the FCM stand-in."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.settings import Settings
from tests.helpers.processes import Processes
from tests.helpers.push import device_states, push, register, wait_push
from tests.standins.fcm import GOOGLE_TOKEN_AUDIENCE, SCOPE, FcmStandIn, live_fcm

TOKEN = "fcm-token-A:APA91bH" + "x" * 40
OTHER = "fcm-token-B:APA91bH" + "y" * 40


@pytest.fixture
def settings(settings: Settings, fcm: FcmStandIn) -> Settings:
    return live_fcm(settings, fcm)


def test_fcm_push_sends_the_exact_request_fcm_expects(
    client: FlaskClient, auth: dict[str, str], processes: Processes, fcm: FcmStandIn
) -> None:
    device = register(client, auth, "ana", TOKEN).get_json()
    processes.relay()
    worker = processes.worker("push")

    created = push(
        client, auth, userId="ana", priority="HIGH", data={"orderId": "42", "items": [1, 2]}
    )
    delivery = wait_push(client, auth, created["id"], "SENT")

    [grant] = fcm.token_grants
    assert grant["header"]["alg"] == "RS256" and grant["header"]["kid"] == fcm.account.key_id
    assert grant["claims"]["iss"] == fcm.account.client_email
    assert grant["claims"]["aud"] == GOOGLE_TOKEN_AUDIENCE and grant["claims"]["scope"] == SCOPE
    [request] = fcm.received
    assert request.path == "/v1/projects/test-project/messages:send"
    assert request.headers["authorization"].startswith("Bearer ya29.stand-in-")
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "message": {
            "token": TOKEN,
            "notification": {"title": "Hello", "body": "Your order shipped"},
            "data": {"notificationId": created["id"], "orderId": "42", "items": "[1,2]"},
            "android": {"priority": "high"},
        },
        "validate_only": False,
    }
    assert fcm.rejected == []
    [result] = delivery["devices"]
    assert (result["deviceId"], result["status"], result["attempts"]) == (device["id"], "SENT", 1)
    assert result["providerMessageId"].startswith("projects/test-project/messages/")
    assert delivery["providerMessageId"] == result["providerMessageId"]
    assert TOKEN not in worker.log()


def test_fcm_access_token_is_obtained_once_and_reused_across_sends(
    client: FlaskClient, auth: dict[str, str], processes: Processes, fcm: FcmStandIn
) -> None:
    register(client, auth, "ana", TOKEN)
    register(client, auth, "ana", OTHER)
    processes.relay()
    processes.worker("push")

    ids = [push(client, auth, userId="ana")["id"] for _ in range(3)]
    for notification_id in ids:
        wait_push(client, auth, notification_id, "SENT")

    assert len(fcm.received) == 6
    assert len(fcm.token_grants) == 1
    assert len({r.headers["authorization"] for r in fcm.received}) == 1


@pytest.mark.parametrize(
    ("answer", "code"),
    [("unregistered", "fcm:UNREGISTERED"), ("invalid_token", "fcm:INVALID_ARGUMENT")],
)
def test_fcm_dead_token_is_deactivated_and_never_tried_again(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    fcm: FcmStandIn,
    engine: Engine,
    answer: str,
    code: str,
) -> None:
    register(client, auth, "ana", TOKEN)
    register(client, auth, "ana", OTHER)
    fcm.plan(TOKEN, answer)
    processes.relay()
    processes.worker("push")

    first = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")
    second = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")

    assert [(d["status"], d["errorCode"]) for d in first["devices"]] == [
        ("INVALID", code),
        ("SENT", None),
    ]
    assert [d["tokenPrefix"] for d in second["devices"]] == [OTHER[:8]]
    assert len(fcm.to(TOKEN)) == 1 and len(fcm.to(OTHER)) == 2
    assert device_states(engine)[TOKEN] == (False, code)
    assert TOKEN not in str(first)


def test_fcm_every_device_dead_fails_the_delivery_with_fcms_code(
    client: FlaskClient, auth: dict[str, str], processes: Processes, fcm: FcmStandIn
) -> None:
    register(client, auth, "ana", TOKEN)
    fcm.plan(TOKEN, "unregistered")
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "FAILED")

    assert delivery["errorCode"] == "fcm:UNREGISTERED"
    assert delivery["attempts"] == 1
    assert "404" in delivery["lastError"] and TOKEN not in delivery["lastError"]


@pytest.mark.parametrize(
    ("answer", "code"),
    [("invalid_payload", "fcm:INVALID_ARGUMENT"), ("sender_mismatch", "fcm:SENDER_ID_MISMATCH")],
)
def test_fcm_permanent_error_fails_at_once_and_keeps_the_device(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    fcm: FcmStandIn,
    engine: Engine,
    answer: str,
    code: str,
) -> None:
    register(client, auth, "ana", TOKEN)
    fcm.plan(TOKEN, answer)
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "FAILED")

    assert (delivery["errorCode"], delivery["attempts"]) == (code, 1)
    assert [d["status"] for d in delivery["devices"]] == ["FAILED"]
    assert len(fcm.to(TOKEN)) == 1
    assert device_states(engine)[TOKEN] == (True, None)


@pytest.mark.parametrize("answer", ["unavailable", "internal"])
def test_fcm_server_error_is_retried_once_per_attempt_and_only_for_that_device(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    fcm: FcmStandIn,
    answer: str,
) -> None:
    register(client, auth, "ana", TOKEN)
    register(client, auth, "ana", OTHER)
    fcm.plan(TOKEN, answer, answer)
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "SENT")

    # urllib3 does not retry the 503 behind our back: one request per attempt.
    assert len(fcm.to(TOKEN)) == 3 and len(fcm.to(OTHER)) == 1
    assert delivery["attempts"] == 3
    assert [(d["status"], d["attempts"]) for d in delivery["devices"]] == [("SENT", 3), ("SENT", 1)]


def test_fcm_unavailable_until_the_last_attempt_fails_with_its_code(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    fcm: FcmStandIn,
    settings: Settings,
) -> None:
    register(client, auth, "ana", TOKEN)
    fcm.plan(TOKEN, *["unavailable"] * settings.delivery_max_attempts)
    processes.relay()
    processes.worker("push")

    delivery = wait_push(client, auth, push(client, auth, userId="ana")["id"], "FAILED")

    assert delivery["errorCode"] == "fcm:UNAVAILABLE"
    assert f"gave up after {settings.delivery_max_attempts} attempts" in delivery["lastError"]
    assert [(d["status"], d["errorCode"]) for d in delivery["devices"]] == [
        ("FAILED", "fcm:UNAVAILABLE")
    ]


def test_fcm_429_becomes_a_scheduled_retry_and_does_not_hold_the_worker_thread(
    client: FlaskClient, auth: dict[str, str], processes: Processes, fcm: FcmStandIn
) -> None:
    register(client, auth, "ana", TOKEN)
    register(client, auth, "bob", OTHER)
    fcm.retry_after = "4"
    fcm.plan(TOKEN, "quota")
    processes.relay()
    # One worker thread: if the 429 held it for the Retry-After, bob would wait behind it.
    processes.worker("push", WORKER_CONCURRENCY="1", RETRY_BACKOFF_MAX_SECONDS="10")

    throttled = push(client, auth, userId="ana")
    retrying = wait_push(client, auth, throttled["id"], "RETRYING")
    other = push(client, auth, userId="bob")
    wait_push(client, auth, other["id"], "SENT")
    bob_sent_at = time.time()
    sent = wait_push(client, auth, throttled["id"], "SENT")

    first, second = fcm.to(TOKEN)
    assert retrying["errorCode"] == "fcm:QUOTA_EXCEEDED"
    next_attempt = datetime.fromisoformat(retrying["nextAttemptAt"]).timestamp()
    assert next_attempt >= first.at + 4 - 0.5
    assert bob_sent_at < first.at + 4
    assert second.at >= first.at + 4 - 0.5
    assert sent["attempts"] == 2


def test_fcm_device_removed_while_its_push_waits_to_retry_is_not_sent(
    client: FlaskClient, auth: dict[str, str], processes: Processes, fcm: FcmStandIn
) -> None:
    device = register(client, auth, "ana", TOKEN).get_json()
    fcm.retry_after = "3"
    fcm.plan(TOKEN, "quota")
    processes.relay()
    processes.worker("push", RETRY_BACKOFF_MAX_SECONDS="10")

    created = push(client, auth, userId="ana")
    wait_push(client, auth, created["id"], "RETRYING")
    client.delete(f"/api/v1/users/ana/devices/{device['id']}", headers=auth)
    delivery = wait_push(client, auth, created["id"], "FAILED")

    assert len(fcm.to(TOKEN)) == 1
    assert delivery["errorCode"] == "device_removed"
    assert [(d["deviceId"], d["status"], d["attempts"]) for d in delivery["devices"]] == [
        (None, "FAILED", 1)
    ]
