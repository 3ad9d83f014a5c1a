"""Every provider against its stand-in: each answer of the service becomes the outcome in the
provider's table (tests/helpers/contract.py runs the tables), and through the worker, a provider
that cannot be reached is retried until the limit on every channel."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.domain import Channel, PushPlatform
from app.core.settings import Settings
from tasks.channels import PUSH_SENDERS, resolve
from tasks.channels.base import InvalidRecipient, Message, Outcome, Permanent, Retryable, Sent
from tasks.channels.push import Device, PlatformSender
from tests.helpers import contract
from tests.helpers.api import HOOK, SEED, post, wait_delivery
from tests.helpers.contract import UNREACHABLE, Row, Subject
from tests.helpers.factories import make_device
from tests.helpers.net import free_port
from tests.helpers.processes import Processes
from tests.helpers.push import APNS_TOKEN, FCM_TOKEN
from tests.standins import sms, webhook
from tests.standins.apns import ApnsStandIn, live_apns
from tests.standins.fcm import FcmStandIn, live_fcm
from tests.standins.sms import SmsGatewayStandIn, live_sms
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver, live_webhook

# --- the tables -----------------------------------------------------------------------------

TABLES: dict[str, list[Row]] = {
    "sms": [
        Row(sms.Reply(201), Sent),
        Row(sms.Reply(400, 21211), InvalidRecipient, "sms_21211"),
        Row(sms.Reply(400, 21614), InvalidRecipient, "sms_21614"),
        Row(sms.Reply(400, 21610), InvalidRecipient, "sms_21610"),
        Row(sms.Reply(400, 21606), Permanent, "sms_21606"),
        Row(sms.Reply(403), Permanent, "sms_http_403"),
        Row(sms.Reply(404, 20404), Permanent, "sms_20404"),
        Row(sms.Reply(429, 20429, retry_after="7"), Retryable, "sms_20429", 7.0),
        Row(sms.Reply(500), Retryable, "sms_http_500"),
        Row(sms.Reply(503), Retryable, "sms_http_503"),
        Row(sms.STALL, Retryable, "sms_timeout"),
        Row(UNREACHABLE, Retryable, "sms_connection"),
    ],
    "webhook": [
        Row(webhook.Reply(200), Sent),
        Row(webhook.Reply(202), Sent),
        Row(
            webhook.Reply(302, location="http://127.0.0.1:9/elsewhere"),
            Permanent,
            "webhook_http_302",
        ),
        Row(webhook.Reply(401), Permanent, "webhook_http_401"),
        Row(webhook.Reply(404), Permanent, "webhook_http_404"),
        Row(webhook.Reply(429, retry_after="7"), Retryable, "webhook_http_429", 7.0),
        Row(webhook.Reply(500), Retryable, "webhook_http_500"),
        Row(webhook.Reply(503), Retryable, "webhook_http_503"),
        Row(webhook.STALL, Retryable, "webhook_timeout"),
        Row(UNREACHABLE, Retryable, "webhook_connection"),
    ],
    # Kept to the outcome classes: tests/test_email.py covers SMTP in depth.
    "smtp": [
        Row(250, Sent),
        Row(451, Retryable, "smtp_4xx"),
        Row(550, InvalidRecipient, "smtp_550"),
        Row(554, Permanent, "smtp_5xx"),
        Row(UNREACHABLE, Retryable, "smtp_connection"),
    ],
    "fcm": [
        Row("ok", Sent),
        Row("unregistered", InvalidRecipient, "fcm:UNREGISTERED"),
        Row("invalid_token", InvalidRecipient, "fcm:INVALID_ARGUMENT"),
        Row("invalid_payload", Permanent, "fcm:INVALID_ARGUMENT"),
        Row("sender_mismatch", Permanent, "fcm:SENDER_ID_MISMATCH"),
        Row("quota", Retryable, "fcm:QUOTA_EXCEEDED", 2.0),  # the stand-in's Retry-After: 2
        Row("internal", Retryable, "fcm:INTERNAL"),
        Row("unavailable", Retryable, "fcm:UNAVAILABLE"),
        Row(UNREACHABLE, Retryable, "fcm:connection_error"),
    ],
    "apns": [
        Row("ok", Sent),
        Row("bad_token", InvalidRecipient, "apns:BadDeviceToken"),
        Row("unregistered", InvalidRecipient, "apns:Unregistered"),
        Row("not_for_topic", Permanent, "apns:DeviceTokenNotForTopic"),
        Row("expired_provider_token", Retryable, "apns:ExpiredProviderToken"),
        Row("too_many", Retryable, "apns:TooManyRequests", 7.0),  # ApnsSubject sets Retry-After
        Row("internal", Retryable, "apns:InternalServerError"),
        Row("unavailable", Retryable, "apns:ServiceUnavailable"),
        Row(UNREACHABLE, Retryable, "apns:connection_error"),
    ],
}


# --- each provider wired to its stand-in ------------------------------------------------------


def nowhere(scheme: str = "http") -> str:
    """An address where nothing listens."""
    return f"{scheme}://127.0.0.1:{free_port()}"


class SmsSubject:
    def __init__(self, settings: Settings, gateway: SmsGatewayStandIn) -> None:
        self.settings, self.gateway = settings, gateway
        self.numbers = itertools.count(1)

    def unreachable(self) -> None:
        self.settings = replace(self.settings, sms_api_base_url=nowhere())

    @contextmanager
    def running(self) -> Iterator[None]:
        with contract.worker_provider(self.settings, Channel.SMS) as self.provider:
            yield

    def message(self, answer: Any) -> Message:
        phone = f"+1415555{next(self.numbers):04d}"
        if answer is not UNREACHABLE:
            self.gateway.plan(phone, answer)
        return contract.message(Channel.SMS, recipient_phone=phone)

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        return list(self.provider.send(messages))

    def secrets(self, message: Message) -> list[str]:
        return [message.recipient_phone or ""]


class WebhookSubject:
    def __init__(self, settings: Settings, receiver: WebhookReceiver) -> None:
        self.settings, self.receiver = settings, receiver
        self.base = receiver.url
        self.paths = itertools.count(1)

    def unreachable(self) -> None:
        self.base = nowhere()

    @contextmanager
    def running(self) -> Iterator[None]:
        with contract.worker_provider(self.settings, Channel.WEBHOOK) as self.provider:
            yield

    def message(self, answer: Any) -> Message:
        path = f"/contract/{next(self.paths)}"
        if answer is not UNREACHABLE:
            self.receiver.plan(path, answer)
        return contract.message(
            Channel.WEBHOOK, webhook_url=self.base + path, webhook_secret="whsec_contract"
        )

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        return list(self.provider.send(messages))

    def secrets(self, message: Message) -> list[str]:
        return []


class SmtpSubject:
    def __init__(self, settings: Settings, smtp: SmtpStandIn) -> None:
        self.settings, self.smtp = settings, smtp
        self.recipients = itertools.count(1)

    def unreachable(self) -> None:
        self.settings = replace(self.settings, smtp_port=free_port())

    @contextmanager
    def running(self) -> Iterator[None]:
        with contract.worker_provider(self.settings, Channel.EMAIL) as self.provider:
            yield

    def message(self, answer: Any) -> Message:
        recipient = f"contract-{uuid.uuid4().hex[:8]}-{next(self.recipients)}@example.com"
        if answer is not UNREACHABLE:
            self.smtp.plan(recipient, answer)
        return contract.message(Channel.EMAIL, recipient_email=recipient)

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        return list(self.provider.send(messages))

    def secrets(self, message: Message) -> list[str]:
        return []


class PushSubject:
    """A platform sender (FCM or APNs) sends one push to several devices: here each message
    stands for that push to the next device, and a batch is the push to all of them."""

    platform: PushPlatform

    def __init__(self, settings: Settings, standin: FcmStandIn | ApnsStandIn) -> None:
        self.settings, self.standin = settings, standin
        self.push = contract.message(Channel.PUSH, user_id="ana")
        self.devices: dict[uuid.UUID, Device] = {}
        self.numbers = itertools.count(1)

    def token(self, number: int) -> str:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[None]:
        # Built as push_senders builds it for PUSH_PROVIDER=live.
        self.sender: PlatformSender = resolve(PUSH_SENDERS[self.platform])(self.settings)
        try:
            yield
        finally:
            if hasattr(self.sender, "close"):  # APNs: its connection and event-loop thread
                self.sender.close()

    def message(self, answer: Any) -> Message:
        token = self.token(next(self.numbers))
        if answer is not UNREACHABLE:
            self.standin.plan(token, answer)
        handle = replace(self.push, delivery_id=uuid.uuid4())
        self.devices[handle.delivery_id] = Device(
            uuid.uuid4(), self.platform, token, "com.example.shop", None
        )
        return handle

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        return self.sender.send(self.push, [self.devices[m.delivery_id] for m in messages])

    def secrets(self, message: Message) -> list[str]:
        return [self.devices[message.delivery_id].token]


class FcmSubject(PushSubject):
    platform = PushPlatform.FCM

    def unreachable(self) -> None:
        self.settings = replace(self.settings, fcm_base_url=nowhere())

    def token(self, number: int) -> str:
        return f"fcm-{number}:APA91b" + "c" * 40


class ApnsSubject(PushSubject):
    platform = PushPlatform.APNS

    def unreachable(self) -> None:
        self.settings = replace(self.settings, apns_base_url=nowhere("https"))

    def token(self, number: int) -> str:
        return f"{number:064x}"


@pytest.fixture
def settings(
    settings: Settings, gateway: SmsGatewayStandIn, fcm: FcmStandIn, apns: ApnsStandIn
) -> Settings:
    """Every provider sends to its stand-in, with short timeouts for the stalled answers."""
    wired = live_webhook(live_sms(live_apns(live_fcm(settings, fcm), apns), gateway))
    return replace(wired, sms_timeout_seconds=0.5, webhook_read_timeout_seconds=0.5)


@pytest.fixture
def subjects(
    settings: Settings,
    gateway: SmsGatewayStandIn,
    receiver: WebhookReceiver,
    smtp: SmtpStandIn,
    fcm: FcmStandIn,
    apns: ApnsStandIn,
) -> dict[str, Callable[[], Subject]]:
    apns.retry_after = "7"
    return {
        "sms": lambda: SmsSubject(settings, gateway),
        "webhook": lambda: WebhookSubject(settings, receiver),
        "smtp": lambda: SmtpSubject(settings, smtp),
        "fcm": lambda: FcmSubject(settings, fcm),
        "apns": lambda: ApnsSubject(settings, apns),
    }


# --- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "row"),
    [
        pytest.param(provider, row, id=f"{provider}:{row.code or 'sent'}")
        for provider, rows in TABLES.items()
        for row in rows
    ],
)
def test_each_answer_of_the_service_becomes_the_outcome_in_the_providers_table(
    subjects: dict[str, Callable[[], Subject]], provider: str, row: Row
) -> None:
    contract.check_row(subjects[provider](), row)


@pytest.mark.parametrize("provider", TABLES)
def test_a_batch_gets_one_outcome_per_message_in_order(
    subjects: dict[str, Callable[[], Subject]], provider: str
) -> None:
    contract.check_batch(subjects[provider](), TABLES[provider])


# --- through the worker ---------------------------------------------------------------------

PUSH = {"channels": ["PUSH"], "subject": "Hello", "body": "Your order shipped", "userId": "ana"}
SMS = {
    "type": "TRANSACTIONAL",
    "priority": "HIGH",
    "recipientPhone": "+14155550123",
    "body": "Your code",
    "channels": ["SMS"],
}
# Per channel: the worker's queue, the request, the worker's environment that sends where nothing
# listens (or the request does), and the code the delivery fails with.
UNREACHABLE_ROUTES: dict[str, Callable[[], tuple[str, dict[str, Any], dict[str, str], str]]] = {
    "EMAIL": lambda: ("email", SEED, {"SMTP_PORT": str(free_port())}, "smtp_connection"),
    "SMS": lambda: ("sms", SMS, {"SMS_API_BASE_URL": nowhere()}, "sms_connection"),
    "WEBHOOK": lambda: (
        "webhook",
        {**HOOK, "webhookUrl": f"{nowhere()}/hooks/nobody"},
        {},
        "webhook_connection",
    ),
    "PUSH-fcm": lambda: ("push", PUSH, {"FCM_BASE_URL": nowhere()}, "fcm:connection_error"),
    "PUSH-apns": lambda: (
        "push",
        PUSH,
        {"APNS_BASE_URL": nowhere("https")},
        "apns:connection_error",
    ),
}


@pytest.mark.parametrize("route", UNREACHABLE_ROUTES)
def test_unreachable_provider_is_retried_until_the_limit_then_failed(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    settings: Settings,
    engine: Engine,
    route: str,
) -> None:
    queue, body, environment, code = UNREACHABLE_ROUTES[route]()
    if route == "PUSH-fcm":
        make_device(engine, "ana", "fcm", FCM_TOKEN)
    if route == "PUSH-apns":
        make_device(engine, "ana", "apns", APNS_TOKEN)
    processes.relay()
    processes.worker(queue, **environment)

    created = post(client, auth, body).get_json()
    delivery = wait_delivery(client, auth, created["id"], "FAILED")

    assert delivery["attempts"] == settings.delivery_max_attempts
    assert delivery["errorCode"] == code
    assert f"gave up after {settings.delivery_max_attempts} attempts" in delivery["lastError"]
    if route.startswith("PUSH"):
        assert [(d["status"], d["errorCode"]) for d in delivery["devices"]] == [("FAILED", code)]
