"""SMS: segment counting, the API's length limit, and end to end through real processes to a
Twilio-compatible gateway stand-in (API → PostgreSQL → relay → Redis → worker → gateway)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.core.sms import Segments, sms_segments
from tasks.channels.http import retry_after_seconds
from tasks.channels.sms import redact_numbers
from tests.conftest import SMS_ACCOUNT_SID as ACCOUNT_SID
from tests.conftest import SMS_AUTH_TOKEN as AUTH_TOKEN
from tests.helpers.api import field_rules, post, wait_delivery
from tests.helpers.db import audit_trail, rows_written
from tests.helpers.processes import Processes
from tests.standins.sms import SENDER, STALL, Reply, SmsGatewayStandIn, live_sms

PHONE = "+14155550123"
SMS = {
    "type": "TRANSACTIONAL",
    "priority": "HIGH",
    "recipientPhone": PHONE,
    "body": "Your code",
    "channels": ["SMS"],
}


# --- segments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, Segments("GSM-7", 1)),
        ("a" * 161, Segments("GSM-7", 2)),
        ("a" * 306, Segments("GSM-7", 2)),
        ("a" * 307, Segments("GSM-7", 3)),
        ("@£$¥èé Ñ§¿ äöñüà\n", Segments("GSM-7", 1)),
        ("€" * 80, Segments("GSM-7", 1)),  # extension characters take two septets each
        ("€" * 81, Segments("GSM-7", 2)),
        ("a" * 152 + "€" + "a" * 152, Segments("GSM-7", 3)),  # an escape pair is never split
        ("a" * 159 + "ç", Segments("UCS-2", 3)),  # one non-GSM character makes it all UCS-2
        ("ж" * 70, Segments("UCS-2", 1)),
        ("ж" * 71, Segments("UCS-2", 2)),
        ("ж" * 134, Segments("UCS-2", 2)),
        ("ж" * 135, Segments("UCS-2", 3)),
        ("😀" * 35, Segments("UCS-2", 1)),  # an emoji is two UTF-16 units
        ("😀" * 36, Segments("UCS-2", 2)),
        ("ж" * 66 + "😀" + "ж" * 66, Segments("UCS-2", 3)),  # a surrogate pair is never split
    ],
)
def test_sms_segments_count_gsm7_and_ucs2_parts(body: str, expected: Segments) -> None:
    assert sms_segments(body) == expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Tue, 01 Jan 2030 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_phone_numbers_in_gateway_messages_are_cut_to_their_last_two_digits() -> None:
    redacted = redact_numbers("The 'To' number +14155550123 is not a valid phone number.")

    assert redacted == "The 'To' number +…23 is not a valid phone number."


# --- the API's limit ------------------------------------------------------------------------


def test_sms_body_over_the_segment_limit_is_422_and_writes_nothing(
    client: FlaskClient, auth: dict[str, str], engine: Engine, settings: Settings
) -> None:
    too_long = "a" * (153 * settings.sms_max_segments + 1)

    response = post(client, auth, {**SMS, "body": too_long})

    assert response.status_code == 422
    assert field_rules(response) == {("body", "sms_too_many_segments")}
    assert f"{settings.sms_max_segments + 1} SMS segments" in response.get_data(as_text=True)
    assert rows_written(engine) == 0


def test_long_body_is_accepted_at_the_limit_and_when_sms_is_not_a_channel(
    client: FlaskClient, auth: dict[str, str], settings: Settings
) -> None:
    at_limit = "a" * (153 * settings.sms_max_segments)
    email_only = {
        "recipientEmail": "user@example.com",
        "subject": "Long",
        "body": at_limit + "a",
        "channels": ["EMAIL"],
    }

    assert post(client, auth, {**SMS, "body": at_limit}).status_code == 202
    assert post(client, auth, email_only).status_code == 202


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings, gateway: SmsGatewayStandIn) -> Settings:
    gateway.clear()
    return replace(live_sms(settings, gateway), sms_timeout_seconds=2.0)


def start(processes: Processes, **env: str) -> None:
    processes.relay()
    processes.worker(queues="sms", **env)


def test_sms_is_posted_to_the_gateway_as_twilio_expects_and_reads_back_sent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    gateway: SmsGatewayStandIn,
) -> None:
    start(processes)
    body = "Your code is 123456. " * 10  # 210 GSM-7 characters: two segments

    created = post(client, auth, {**SMS, "body": body}).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    [(sid, request)] = gateway.sent.items()
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {"To": [PHONE], "From": [SENDER], "Body": [body]}
    assert delivery["providerMessageId"] == sid
    assert delivery["attempts"] == 1
    worker_log = processes.started[-1].log()
    assert f"sending SMS delivery {delivery['id']}: 2 segment(s), GSM-7" in worker_log
    assert PHONE not in worker_log


def test_sms_sends_reuse_one_connection_to_the_gateway(
    client: FlaskClient, auth: dict[str, str], processes: Processes, gateway: SmsGatewayStandIn
) -> None:
    start(processes)

    for _ in range(3):
        created = post(client, auth, SMS).get_json()
        wait_delivery(client, auth, created["id"], "SENT")

    assert len(gateway.requests) == 3
    assert len({r.client_port for r in gateway.requests}) == 1


def test_invalid_non_mobile_and_unsubscribed_numbers_fail_at_once_with_the_twilio_code(
    client: FlaskClient, auth: dict[str, str], processes: Processes, gateway: SmsGatewayStandIn
) -> None:
    cases = {"+14155550001": 21211, "+14155550002": 21614, "+14155550003": 21610}
    for phone, code in cases.items():
        gateway.plan(phone, Reply(400, code))
    start(processes)

    created = {
        phone: post(client, auth, {**SMS, "recipientPhone": phone}).get_json()["id"]
        for phone in cases
    }
    deliveries = {phone: wait_delivery(client, auth, created[phone], "FAILED") for phone in cases}

    for phone, code in cases.items():
        assert deliveries[phone]["errorCode"] == f"sms_{code}"
        assert deliveries[phone]["attempts"] == 1
        assert gateway.attempts[phone] == 1
        assert phone not in deliveries[phone]["lastError"]
    assert "not a valid phone number" in deliveries["+14155550001"]["lastError"]


def test_other_gateway_4xx_fails_permanently_without_retrying(
    client: FlaskClient, auth: dict[str, str], processes: Processes, gateway: SmsGatewayStandIn
) -> None:
    gateway.plan("+14155550004", Reply(400, 21606))
    gateway.plan("+14155550005", Reply(403))
    start(processes)

    bad_sender = post(client, auth, {**SMS, "recipientPhone": "+14155550004"}).get_json()
    forbidden = post(client, auth, {**SMS, "recipientPhone": "+14155550005"}).get_json()
    bad_sender_delivery = wait_delivery(client, auth, bad_sender["id"], "FAILED")
    forbidden_delivery = wait_delivery(client, auth, forbidden["id"], "FAILED")

    assert (bad_sender_delivery["errorCode"], bad_sender_delivery["attempts"]) == ("sms_21606", 1)
    assert (forbidden_delivery["errorCode"], forbidden_delivery["attempts"]) == ("sms_http_403", 1)


def test_wrong_sms_credentials_fail_with_the_gateways_401_code(
    client: FlaskClient, auth: dict[str, str], processes: Processes, gateway: SmsGatewayStandIn
) -> None:
    start(processes, SMS_AUTH_TOKEN="rotated-away")

    created = post(client, auth, SMS).get_json()
    delivery = wait_delivery(client, auth, created["id"], "FAILED")

    assert delivery["errorCode"] == "sms_20003"
    assert "401" in delivery["lastError"]
    assert "rotated-away" not in delivery["lastError"]
    assert gateway.sent == {}


def test_gateway_5xx_is_retried_then_sent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    gateway: SmsGatewayStandIn,
    engine: Engine,
) -> None:
    gateway.plan(PHONE, 500, 503)
    start(processes)

    created = post(client, auth, SMS).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 3
    assert len(gateway.to(PHONE)) == 1
    assert audit_trail(engine, delivery["id"]) == [
        ("PENDING", "QUEUED", 0, None),
        ("QUEUED", "SENDING", 1, None),
        ("SENDING", "RETRYING", 1, "sms_http_500"),
        ("RETRYING", "SENDING", 2, "sms_http_500"),
        ("SENDING", "RETRYING", 2, "sms_http_503"),
        ("RETRYING", "SENDING", 3, "sms_http_503"),
        ("SENDING", "SENT", 3, None),
    ]


def test_gateway_429_is_retried_no_sooner_than_its_retry_after(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    gateway: SmsGatewayStandIn,
    engine: Engine,
) -> None:
    # Retry-After is honoured up to RETRY_BACKOFF_MAX_SECONDS (1 s here); the backoff alone
    # would retry after at most RETRY_BACKOFF_BASE_SECONDS (0.2 s).
    gateway.plan(PHONE, Reply(429, 20429, retry_after="1"))
    start(processes)

    created = post(client, auth, SMS).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    first, second = gateway.requests
    assert second.at - first.at >= 1.0
    assert ("SENDING", "RETRYING", 1, "sms_20429") in audit_trail(engine, delivery["id"])


def test_gateway_that_does_not_answer_times_out_and_is_retried(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    gateway: SmsGatewayStandIn,
    engine: Engine,
) -> None:
    gateway.plan(PHONE, STALL)
    start(processes, SMS_TIMEOUT_SECONDS="1")

    created = post(client, auth, SMS).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 2
    assert ("SENDING", "RETRYING", 1, "sms_timeout") in audit_trail(engine, delivery["id"])
