"""One notification on four channels at once, each against its provider's stand-in."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.api.keys import IssuedKey, create_api_key
from app.core.settings import Settings
from tests.helpers.api import post
from tests.helpers.processes import Processes, wait_for
from tests.helpers.push import FCM_TOKEN, register
from tests.standins.fcm import FcmStandIn, live_fcm
from tests.standins.sms import Reply, SmsGatewayStandIn, live_sms
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver, live_webhook

PHONE = "+14155550001"


@pytest.fixture
def settings(
    settings: Settings, fcm: FcmStandIn, gateway: SmsGatewayStandIn, receiver: WebhookReceiver
) -> Settings:
    gateway.clear()
    receiver.clear()
    return live_webhook(live_sms(live_fcm(settings, fcm), gateway))


@pytest.fixture
def issued(engine: Engine) -> IssuedKey:
    return create_api_key(engine, "multichannel")


@pytest.fixture
def auth(issued: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.key}"}


def test_one_channel_failing_permanently_leaves_the_others_sent_and_says_so(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    smtp: SmtpStandIn,
    fcm: FcmStandIn,
    gateway: SmsGatewayStandIn,
    receiver: WebhookReceiver,
) -> None:
    register(client, auth, "ana", FCM_TOKEN)
    gateway.plan(PHONE, Reply(400, 21211))  # not a valid phone number: permanent
    processes.relay()
    processes.worker(queues="email,push,sms,webhook")

    created = post(
        client,
        auth,
        {
            "channels": ["EMAIL", "PUSH", "SMS", "WEBHOOK"],
            "subject": "Your order shipped",
            "body": "It is on its way.",
            "recipientEmail": "ana@example.com",
            "userId": "ana",
            "recipientPhone": PHONE,
            "webhookUrl": f"{receiver.url}/orders",
        },
    ).get_json()

    def finished() -> dict | None:
        body = client.get(f"/api/v1/notifications/{created['id']}", headers=auth).get_json()
        return body if body["status"] not in ("PENDING", "PROCESSING") else None

    notification = wait_for(finished, timeout=40, what="every channel finished")
    statuses = {d["channel"]: (d["status"], d["errorCode"]) for d in notification["deliveries"]}  # type: ignore[index]

    assert notification["status"] == "PARTIALLY_SENT"  # type: ignore[index]
    assert statuses == {
        "EMAIL": ("SENT", None),
        "PUSH": ("SENT", None),
        "SMS": ("FAILED", "sms_21211"),
        "WEBHOOK": ("SENT", None),
    }
    assert len(smtp.to("ana@example.com")) == 1
    assert [r.body["message"]["token"] for r in fcm.received] == [FCM_TOKEN]
    assert gateway.attempts[PHONE] == 1
    assert len(receiver.to("/orders")) == 1
