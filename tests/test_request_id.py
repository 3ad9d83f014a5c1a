"""``X-Request-Id``: the API honours a sane one from the caller (or makes one), returns it, logs
it on that request's lines and stores it with the notification, and the relay's and worker's
lines about that notification carry it; an insane one is replaced by a fresh id."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Engine, text

from tests.helpers.api import http
from tests.helpers.db import status_counts
from tests.helpers.net import free_port
from tests.helpers.processes import Process, Processes, wait_for

GENERATED = re.compile(r"^[0-9a-f]{32}$")
EMAIL = {
    "recipientEmail": "user@example.com",
    "subject": "Your order shipped",
    "body": "It is on its way.",
    "channels": ["EMAIL"],
}


def call(
    method: str, url: str, request_id: str | None, key: str | None = None, body: Any = None
) -> tuple[int, str, Any]:
    """(status, the X-Request-Id answered, parsed JSON body) of one HTTP request."""
    headers = {} if request_id is None else {"X-Request-Id": request_id}
    status, answered, parsed = http(method, url, key, body, headers)
    return status, answered["X-Request-Id"], parsed


def log_lines(process: Process) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]


def access_lines(process: Process, request_id: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of the API's access-log lines that carry ``request_id``."""

    def found() -> list[tuple[str, str, int]]:
        return [
            (line["method"], line["path"], line["status"])
            for line in log_lines(process)
            if line["logger"] == "notifications.access" and line.get("request_id") == request_id
        ]

    return wait_for(found, 10, 0.1, f"an access line with request id {request_id}")  # type: ignore[return-value]


def start_api(processes: Processes) -> tuple[str, Process]:
    port = free_port()
    process = processes.api(port, API_WORKERS="1", LOG_FORMAT="json")
    return f"http://127.0.0.1:{port}", process


def test_a_callers_request_id_comes_back_is_on_that_requests_log_line_and_is_stored(
    processes: Processes, api_key: str, engine: Engine
) -> None:
    base, api = start_api(processes)

    live = call("GET", f"{base}/api/v1/health/live", "checkout-7f3a.retry:2")
    posted = call("POST", f"{base}/api/v1/notifications", "order-1234_shipped", api_key, EMAIL)

    assert live[:2] == (200, "checkout-7f3a.retry:2")
    assert posted[:2] == (202, "order-1234_shipped")
    assert access_lines(api, "checkout-7f3a.retry:2") == [("GET", "/api/v1/health/live", 200)]
    assert access_lines(api, "order-1234_shipped") == [("POST", "/api/v1/notifications", 202)]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT request_id FROM notification WHERE id = :id"), {"id": posted[2]["id"]}
        ).scalar_one()
    assert stored == "order-1234_shipped"


def test_an_insane_or_missing_request_id_is_replaced_by_a_fresh_one(processes: Processes) -> None:
    base, api = start_api(processes)
    offered = {
        "spaces": "has spaces in it",
        "too long": "x" * 200,
        "markup": 'a"b<script>',
        "empty": "",
        "missing": None,
    }

    answered = {
        name: call("GET", f"{base}/api/v1/health/live", value)[1] for name, value in offered.items()
    }

    assert all(GENERATED.match(rid) for rid in answered.values()), answered
    assert len(set(answered.values())) == len(offered)
    for rid in answered.values():
        assert access_lines(api, rid) == [("GET", "/api/v1/health/live", 200)]
    log = api.log()
    for insane in ("has spaces in it", "x" * 200, "<script>"):
        assert insane not in log


def test_one_grep_of_the_callers_request_id_follows_a_notification_through_relay_and_worker(
    processes: Processes, api_key: str, engine: Engine
) -> None:
    base, api = start_api(processes)
    relay = processes.relay(LOG_FORMAT="json")
    worker = processes.worker(LOG_FORMAT="json")

    status, _, created = call("POST", f"{base}/api/v1/notifications", "trace-42", api_key, EMAIL)
    wait_for(lambda: status_counts(engine) == {"SENT": 1}, what="the delivery SENT")

    assert status == 202
    delivery_id = created["deliveries"][0]["id"]
    for process in (api, relay, worker):
        grepped = [line for line in log_lines(process) if "trace-42" in json.dumps(line)]
        assert grepped, f"no {process.name} line carries the request id"
        assert {line.get("request_id") for line in grepped} == {"trace-42"}
        about = [line for line in log_lines(process) if line.get("notification_id")]
        assert {line.get("request_id") for line in about} <= {"trace-42"}, process.name
    assert any(
        line.get("delivery_id") == delivery_id and line.get("notification_id") == created["id"]
        for line in log_lines(worker)
        if line.get("request_id") == "trace-42"
    )
