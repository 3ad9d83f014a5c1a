"""WEBHOOK: signed POSTs end to end through real processes to a receiver stand-in, every outcome
class, and the SSRF guard (API → PostgreSQL → relay → Redis → worker → receiver)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import ssl
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import pytest
import trustme
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.api.keys import IssuedKey, create_api_key
from app.core.settings import Settings
from tasks.channels.ssrf import BlockedAddress, GuardedTransport, is_permitted
from tasks.channels.webhook import signature
from tests.helpers.api import HOOK, post, wait_delivery
from tests.helpers.db import audit_trail
from tests.helpers.net import free_port
from tests.helpers.processes import ROOT, Processes, run_cli, wait_for
from tests.standins.webhook import STALL, Reply, WebhookReceiver, live_webhook

# --- the SSRF guard's rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "168.63.129.16",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:0a00:0001::1",
    ],
)
def test_private_loopback_link_local_multicast_reserved_and_metadata_addresses_are_refused(
    address: str,
) -> None:
    assert not is_permitted(ipaddress.ip_address(address), [])


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert is_permitted(ipaddress.ip_address(address), [])


def test_allowed_networks_open_exactly_their_addresses() -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.1.0.0/16")]

    assert is_permitted(ipaddress.ip_address("127.0.0.1"), allowed)
    assert is_permitted(ipaddress.ip_address("10.1.2.3"), allowed)
    assert not is_permitted(ipaddress.ip_address("127.0.0.2"), allowed)
    assert not is_permitted(ipaddress.ip_address("10.2.0.1"), allowed)
    assert not is_permitted(ipaddress.ip_address("::1"), allowed)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings, receiver: WebhookReceiver) -> Settings:
    receiver.clear()
    return replace(
        live_webhook(settings),
        webhook_connect_timeout_seconds=1.0,
        webhook_read_timeout_seconds=2.0,
    )


@pytest.fixture
def issued(engine: Engine) -> IssuedKey:
    return create_api_key(engine, "webhooks")


@pytest.fixture
def auth(issued: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.key}"}


def start(processes: Processes, **env: str) -> None:
    processes.relay()
    processes.worker(queues="webhook", **env)


def hook(receiver: WebhookReceiver, path: str) -> dict[str, Any]:
    return {**HOOK, "webhookUrl": f"{receiver.url}{path}"}


# --- the request ----------------------------------------------------------------------------


def test_webhook_post_carries_the_notification_signed_with_the_keys_secret(
    client: FlaskClient,
    auth: dict[str, str],
    issued: IssuedKey,
    processes: Processes,
    receiver: WebhookReceiver,
) -> None:
    receiver.secret = issued.webhook_secret
    start(processes)

    created = post(client, auth, hook(receiver, "/hooks/orders?token=receivers-own")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/orders?token=receivers-own")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "notification-service-webhook/1"
    assert request.headers["x-notification-id"] == created["id"]
    timestamp = request.headers["x-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        issued.webhook_secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-signature"] == f"sha256={expected}"
    assert request.signature_valid is True
    sent = json.loads(request.body)
    assert datetime.fromisoformat(sent.pop("createdAt")) == datetime.fromisoformat(
        created["createdAt"]
    )
    assert sent == {
        "id": created["id"],
        "deliveryId": delivery["id"],
        "type": "TRANSACTIONAL",
        "priority": "NORMAL",
        "subject": "Order shipped",
        "body": "It is on its way.",
        "data": {"orderId": 42, "items": ["book", "lamp"]},
    }
    worker_log = processes.started[-1].log()
    assert f"webhook delivery {delivery['id']} to http://127.0.0.1:{receiver.port}" in worker_log
    assert "receivers-own" not in worker_log


def test_webhook_secret_printed_once_by_create_api_key_is_the_one_that_signs(
    settings: Settings, client: FlaskClient, processes: Processes, receiver: WebhookReceiver
) -> None:
    result = run_cli(settings, "create-api-key", "--name", "receiver-owner")
    lines = result.stdout.strip().splitlines()
    key = lines[-1]
    [secret] = [line.split(": ", 1)[1] for line in lines if line.startswith("Webhook signing")]
    receiver.secret = secret
    start(processes)

    auth = {"Authorization": f"Bearer {key}"}
    created = post(client, auth, hook(receiver, "/hooks/cli")).get_json()
    wait_delivery(client, auth, created["id"], "SENT")

    assert result.returncode == 0
    assert key.startswith("nsk_") and secret.startswith("whsec_")
    assert result.stdout.count(secret) == 1
    [request] = receiver.requests
    assert request.signature_valid is True


def test_receiver_that_rejects_the_signature_fails_the_delivery(
    client: FlaskClient, auth: dict[str, str], processes: Processes, receiver: WebhookReceiver
) -> None:
    receiver.secret = "whsec_some-other-keys-secret"
    start(processes)

    created = post(client, auth, hook(receiver, "/hooks/strict")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "FAILED")

    assert delivery["errorCode"] == "webhook_http_401"
    assert [r.signature_valid for r in receiver.requests] == [False]


# --- outcome classes ------------------------------------------------------------------------


def test_receiver_5xx_is_retried_then_sent(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    receiver: WebhookReceiver,
    engine: Engine,
) -> None:
    receiver.plan("/hooks/flaky", 503, 500)
    start(processes)

    created = post(client, auth, hook(receiver, "/hooks/flaky")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 3
    assert len(receiver.to("/hooks/flaky")) == 3
    assert audit_trail(engine, delivery["id"]) == [
        ("PENDING", "QUEUED", 0, None),
        ("QUEUED", "SENDING", 1, None),
        ("SENDING", "RETRYING", 1, "webhook_http_503"),
        ("RETRYING", "SENDING", 2, "webhook_http_503"),
        ("SENDING", "RETRYING", 2, "webhook_http_500"),
        ("RETRYING", "SENDING", 3, "webhook_http_500"),
        ("SENDING", "SENT", 3, None),
    ]
    bodies = {r.body for r in receiver.to("/hooks/flaky")}
    assert len({json.loads(b)["deliveryId"] for b in bodies}) == 1


def test_receiver_429_is_retried_no_sooner_than_its_retry_after(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    receiver: WebhookReceiver,
    engine: Engine,
) -> None:
    # Retry-After is honoured up to RETRY_BACKOFF_MAX_SECONDS (1 s here); the backoff alone
    # would retry after at most RETRY_BACKOFF_BASE_SECONDS (0.2 s).
    receiver.plan("/hooks/busy", Reply(429, retry_after="1"))
    start(processes)

    created = post(client, auth, hook(receiver, "/hooks/busy")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    first, second = receiver.to("/hooks/busy")
    assert second.at - first.at >= 1.0
    assert ("SENDING", "RETRYING", 1, "webhook_http_429") in audit_trail(engine, delivery["id"])


def test_receiver_4xx_and_redirects_fail_at_once_and_redirects_are_not_followed(
    client: FlaskClient, auth: dict[str, str], processes: Processes, receiver: WebhookReceiver
) -> None:
    receiver.plan("/hooks/gone", 404)
    receiver.plan("/hooks/moved", Reply(302, location=f"{receiver.url}/hooks/elsewhere"))
    start(processes)

    gone = post(client, auth, hook(receiver, "/hooks/gone")).get_json()
    moved = post(client, auth, hook(receiver, "/hooks/moved")).get_json()
    gone_delivery = wait_delivery(client, auth, gone["id"], "FAILED")
    moved_delivery = wait_delivery(client, auth, moved["id"], "FAILED")

    assert (gone_delivery["errorCode"], gone_delivery["attempts"]) == ("webhook_http_404", 1)
    assert (moved_delivery["errorCode"], moved_delivery["attempts"]) == ("webhook_http_302", 1)
    assert "redirects are not followed" in moved_delivery["lastError"]
    assert len(receiver.to("/hooks/gone")) == 1
    assert receiver.to("/hooks/elsewhere") == []


def test_receiver_that_does_not_answer_times_out_and_is_retried(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    receiver: WebhookReceiver,
    engine: Engine,
) -> None:
    receiver.plan("/hooks/hung", STALL)
    start(processes, WEBHOOK_READ_TIMEOUT_SECONDS="1")

    created = post(client, auth, hook(receiver, "/hooks/hung")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "SENT")

    assert delivery["attempts"] == 2
    assert ("SENDING", "RETRYING", 1, "webhook_timeout") in audit_trail(engine, delivery["id"])


# --- SSRF -----------------------------------------------------------------------------------


def test_webhooks_to_private_metadata_and_localhost_addresses_are_refused_without_allow_list(
    client: FlaskClient, auth: dict[str, str], processes: Processes, receiver: WebhookReceiver
) -> None:
    start(processes, WEBHOOK_ALLOWED_NETWORKS="")
    urls = [
        "http://10.0.0.1/hooks/internal",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"http://localhost:{receiver.port}/hooks/local",
    ]

    created = [post(client, auth, {**HOOK, "webhookUrl": url}).get_json()["id"] for url in urls]
    deliveries = [wait_delivery(client, auth, i, "FAILED") for i in created]

    assert [(d["errorCode"], d["attempts"]) for d in deliveries] == [("ssrf_blocked", 1)] * 3
    assert receiver.requests == []
    assert all("169.254" not in d["lastError"] for d in deliveries)


def test_guard_connects_to_the_address_it_checked_without_resolving_again(
    receiver: WebhookReceiver,
) -> None:
    """A DNS-rebinding name answers an allowed address once, then a forbidden one."""
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    lookups: list[str] = []

    def rebinding_dns(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    allowed = [ipaddress.ip_network("127.0.0.1/32")]
    with httpx.Client(transport=GuardedTransport(allowed, resolve=rebinding_dns)) as http:
        first = http.post(f"http://rebind.test:{receiver.port}/hooks/rebind", content=b"{}")
        with pytest.raises(BlockedAddress):
            # A new connection (another port) resolves again and gets the forbidden answer.
            http.post(f"http://rebind.test:{free_port()}/hooks/rebind", content=b"{}")

    assert first.status_code == 200
    assert lookups == ["rebind.test", "rebind.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"rebind.test:{receiver.port}"


def test_readme_receiver_snippet_accepts_our_signature_and_rejects_tampering() -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(def verify.*?|import hashlib.*?)```", readme, flags=re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)
    verify = namespace["verify"]
    body, now = b'{"id": "n1"}', str(int(time.time()))
    headers = {"X-Timestamp": now, "X-Signature": signature("whsec_a", now, body)}
    old = str(int(time.time()) - 3600)

    assert verify("whsec_a", headers, body)
    assert not verify("whsec_b", headers, body)
    assert not verify("whsec_a", headers, body + b" ")
    replayed = {"X-Timestamp": old, "X-Signature": signature("whsec_a", old, body)}
    assert not verify("whsec_a", replayed, body)


def test_key_issued_before_webhook_signing_fails_its_webhooks_without_sending_unsigned(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    receiver: WebhookReceiver,
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_key SET webhook_secret = NULL"))  # as before migration 0002
    start(processes)

    created = post(client, auth, hook(receiver, "/hooks/legacy")).get_json()
    delivery = wait_delivery(client, auth, created["id"], "FAILED")

    assert (delivery["errorCode"], delivery["attempts"]) == ("webhook_no_secret", 1)
    assert receiver.requests == []


def test_log_providers_deliver_sms_and_webhooks_without_sending_for_development(
    client: FlaskClient, auth: dict[str, str], processes: Processes, receiver: WebhookReceiver
) -> None:
    processes.relay()
    worker = processes.worker(queues="sms,webhook", SMS_PROVIDER="log", WEBHOOK_PROVIDER="log")
    body = {
        **hook(receiver, "/hooks/dev?token=receivers-own"),
        "recipientPhone": "+14155550123",
        "channels": ["SMS", "WEBHOOK"],
    }

    created = post(client, auth, body).get_json()
    url = f"/api/v1/notifications/{created['id']}"
    wait_for(lambda: client.get(url, headers=auth).get_json()["status"] == "SENT", what="SENT")

    assert receiver.requests == []
    log = worker.log()
    assert f"delivered SMS notification {created['id']}" in log
    assert f"delivered WEBHOOK notification {created['id']}" in log
    assert "+14155550123" not in log and "receivers-own" not in log


@pytest.mark.parametrize(
    ("certified_name", "verified"), [("localhost", True), ("other.test", False)]
)
def test_https_webhook_verifies_the_certificate_against_the_host_name_not_the_address(
    certified_name: str, verified: bool
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certified_name).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    tls_receiver = WebhookReceiver(tls=server_context)
    tls_receiver.start()
    allowed = [ipaddress.ip_network("127.0.0.1/32")]
    url = f"https://localhost:{tls_receiver.port}/hooks/tls"
    try:
        with httpx.Client(transport=GuardedTransport(allowed, verify=client_context)) as http:
            if verified:
                assert http.post(url, content=b"{}").status_code == 200
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    http.post(url, content=b"{}")
    finally:
        tls_receiver.stop()

    assert len(tls_receiver.requests) == (1 if verified else 0)
