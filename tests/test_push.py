"""PUSH end to end through real processes: API → relay → worker → device fan-out → per-device
results, with the ``log`` push provider (FCM and APNs have their own test modules)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.settings import Settings, SettingsError
from tests.helpers.factories import make_device
from tests.helpers.processes import Processes
from tests.helpers.push import APNS_TOKEN, FCM_TOKEN, push, register, wait_push


def test_push_to_a_user_reaches_every_active_device_and_shows_each_result(
    client: FlaskClient, auth: dict[str, str], processes: Processes, engine: Engine
) -> None:
    fcm = register(client, auth, "ana", FCM_TOKEN).get_json()
    apns = register(client, auth, "ana", APNS_TOKEN, "apns").get_json()
    make_device(engine, "ana", "fcm", "dead-token-1", active=False)
    register(client, auth, "bob", "bobs-token-1", "fcm")
    processes.relay()
    worker = processes.worker("push")

    created = push(client, auth, userId="ana")
    delivery = wait_push(client, auth, created["id"], "SENT")

    assert [(d["deviceId"], d["platform"], d["status"]) for d in delivery["devices"]] == [
        (fcm["id"], "fcm", "SENT"),
        (apns["id"], "apns", "SENT"),
    ]
    assert all(d["providerMessageId"].startswith("log-") for d in delivery["devices"])
    assert [d["tokenPrefix"] for d in delivery["devices"]] == [FCM_TOKEN[:8], APNS_TOKEN[:8]]
    assert delivery["providerMessageId"] is None
    log = worker.log()
    assert log.count(f"delivered PUSH notification {created['id']}") == 2
    assert FCM_TOKEN not in log and APNS_TOKEN not in log


def test_push_to_explicit_tokens_goes_only_to_those_devices(
    client: FlaskClient, auth: dict[str, str], processes: Processes
) -> None:
    register(client, auth, "ana", FCM_TOKEN)
    apns = register(client, auth, "ana", APNS_TOKEN, "apns").get_json()
    processes.relay()
    processes.worker("push")

    created = push(client, auth, deviceTokens=[APNS_TOKEN])
    delivery = wait_push(client, auth, created["id"], "SENT")

    assert [(d["deviceId"], d["status"]) for d in delivery["devices"]] == [(apns["id"], "SENT")]
    assert delivery["providerMessageId"] == delivery["devices"][0]["providerMessageId"]


def test_push_to_a_user_without_devices_fails_with_a_clear_reason(
    client: FlaskClient, auth: dict[str, str], processes: Processes
) -> None:
    processes.relay()
    processes.worker("push")

    created = push(client, auth, userId="nobody")
    delivery = wait_push(client, auth, created["id"], "FAILED")

    assert delivery["errorCode"] == "push_no_devices"
    assert "nobody" in delivery["lastError"]
    assert delivery["devices"] == []
    assert delivery["attempts"] == 1


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"PUSH_PROVIDER": "fcm"}, "PUSH_PROVIDER"),
        ({"PUSH_PROVIDER": "live"}, "needs FCM_SERVICE_ACCOUNT_FILE or APNS_KEY_FILE"),
        ({"APNS_KEY_FILE": "/k.p8"}, "needs APNS_KEY_ID and APNS_TEAM_ID"),
        ({"APNS_TOKEN_REFRESH_SECONDS": "600"}, "APNS_TOKEN_REFRESH_SECONDS"),
        ({"APNS_TOKEN_REFRESH_SECONDS": "3600"}, "APNS_TOKEN_REFRESH_SECONDS"),
    ],
)
def test_push_settings_that_cannot_work_are_refused_at_start(
    environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env(environ)
