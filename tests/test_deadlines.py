"""Deadlines: a PostgreSQL or Redis that accepts connections and never answers (the tarpit
stand-in) costs a request a bounded wait and a clear 503, never a hang; the relay and the
workers outlive it and deliver once it answers again."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.api.factory import create_app
from app.api.keys import KEY_PREFIX
from app.core import unsubscribe
from app.core.settings import Settings
from tests.helpers.api import SEED
from tests.helpers.db import status_counts
from tests.helpers.factories import make_api_key
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, wait_for
from tests.standins.smtp import SmtpStandIn
from tests.standins.tarpit import Tarpit

# Routes that never touch PostgreSQL, so a hung database does not concern them: liveness by
# design, the static documents, /metrics, and the WebSocket (its closing is item 4's matter).
NO_DATABASE = {
    "static",
    "prometheus_metrics",
    "health.live",
    "openapi.openapi_json",
    "page.static",
    "page.inbox_page",
    "docs.static",
    "docs.docs_page",
    "docs.swagger_ui_asset",
    "console_page.static",
    "console_page.console_page",
    "websocket.notifications",
    # The unsubscribe page only verifies its token's signature; the one-click POST writes.
    "unsubscribe.confirm",
}
DEADLINE = 5.0


@pytest.fixture
def postgres_proxy(database_url: str) -> Iterator[Tarpit]:
    url = make_url(database_url)
    tarpit = Tarpit((url.host or "127.0.0.1", url.port or 5432)).start()
    tarpit.forward()
    yield tarpit
    tarpit.stop()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    running = Tarpit().start()
    yield running
    running.stop()


def through(settings: Settings, tarpit: Tarpit) -> str:
    return make_url(settings.database_url).set(port=tarpit.port).render_as_string(False)


def call(
    port: int, method: str, path: str, key: str, body: Any = None, timeout: float = 30
) -> tuple[int, dict[str, Any], float]:
    """(status, JSON body, seconds taken)."""
    # A bytes body is a form, as a mail provider's one-click unsubscribe POST is.
    form = isinstance(body, bytes)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=body if form or body is None else orjson.dumps(body),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        },
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except TimeoutError:
        return 0, {"error": f"no answer within {timeout}s"}, time.monotonic() - started
    return status, orjson.loads(raw) if raw else {}, time.monotonic() - started


def concurrently(calls: list[tuple[str, str, Any]], port: int, key: str) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def one(index: int) -> None:
        method, path, body = calls[index]
        results[index] = (method, path, *call(port, method, path, key, body))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def every_database_route(settings: Settings) -> list[tuple[str, str, Any]]:
    """(method, path, body) for every route of the API that reads or writes PostgreSQL, each
    with a body it accepts, so that it reaches the database."""
    some_id = str(uuid.uuid4())
    values = {"notification_id": some_id, "key_id": some_id, "item_id": some_id}
    values |= {
        "user_id": "u1",
        "device_id": some_id,
        "delivery_id": some_id,
        "key": "news",
        "version": "1",
    }
    values |= {"channel": "EMAIL", "address": "u1@example.com"}
    # A genuine token: a forged one is refused (400) before the database is asked.
    scope = unsubscribe.Scope("default", "u1", "news", "EMAIL")
    values["token"] = unsubscribe.sign(settings.unsubscribe_secret, scope)
    # Bodies that pass validation, so the route reaches the database.
    bodies: dict[str, Any] = {
        "notifications.submit": SEED,
        "templates.put_template": {"channels": {"SMS": {"body": "b"}}},
        "layouts.put_layout": {"html": "{{ content }}"},
        "users.bulk": {"users": [{"userId": "u1"}]},
        "unsubscribe.one_click": b"List-Unsubscribe=One-Click",
    }
    calls = []
    for rule in create_app(settings).url_map.iter_rules():
        if rule.endpoint in NO_DATABASE:
            continue
        path = rule.build({name: values[name] for name in rule.arguments})[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            body = bodies.get(rule.endpoint, {})
            calls.append((method, path, body if method in {"POST", "PUT", "PATCH"} else None))
    return calls


def assert_all_503_in_time(results: list[Any]) -> None:
    late_or_wrong = [
        (method, path, status, round(seconds, 2), body.get("error", body))
        for method, path, status, body, seconds in results
        if not (
            seconds < DEADLINE
            and status == 503
            and body.get("error", {}).get("code", body.get("status"))
            in {
                "database_unavailable",
                "unavailable",
            }
        )
    ]
    assert late_or_wrong == []


def test_every_route_answers_503_within_5s_when_postgresql_accepts_and_never_answers(
    processes: Processes, settings: Settings, tarpit: Tarpit
) -> None:
    hung = replace(settings, database_url=through(settings, tarpit))
    processes.settings = hung
    port = free_port()
    processes.api(port)
    calls = every_database_route(hung)
    assert ("POST", "/api/v1/notifications", SEED) in calls
    assert ("GET", "/api/v1/health/ready", None) in calls
    assert any(method == "POST" and path.startswith("/u/") for method, path, _ in calls)

    # All at once, as callers would keep coming: more of them than the API's pool holds.
    results = concurrently(calls, port, f"{KEY_PREFIX}{'x' * 40}")

    assert_all_503_in_time(results)
    assert tarpit.accepted >= 1  # they did reach the hung server


def test_requests_on_pooled_connections_answer_503_within_5s_when_postgresql_stops_answering(
    processes: Processes, settings: Settings, engine: Engine, postgres_proxy: Tarpit
) -> None:
    processes.settings = replace(settings, database_url=through(settings, postgres_proxy))
    port = free_port()
    processes.api(port, API_WORKERS="1")
    key = make_api_key(engine).key
    # Warm: the key is cached, the pool and the group-commit writer hold their connections.
    for _ in range(3):
        assert call(port, "POST", "/api/v1/notifications", key, SEED)[0] == 202
    assert call(port, "GET", "/api/v1/notifications", key)[0] == 200
    assert call(port, "GET", "/api/v1/health/ready", key)[0] == 200

    postgres_proxy.hang()
    results = concurrently(
        [("POST", "/api/v1/notifications", SEED)] * 6
        + [("GET", "/api/v1/notifications", None), ("GET", "/api/v1/health/ready", None)],
        port,
        key,
    )

    assert_all_503_in_time(results)
    # Once PostgreSQL answers again (through new connections), so does the API.
    postgres_proxy.forward()
    wait_for(
        lambda: call(port, "POST", "/api/v1/notifications", key, SEED)[0] == 202,
        timeout=15,
        interval=0.5,
        what="the API accepting again",
    )


def test_a_hung_redis_costs_a_request_almost_nothing_through_the_rate_limiter(
    processes: Processes, settings: Settings, engine: Engine, tarpit: Tarpit
) -> None:
    processes.settings = replace(settings, redis_url=f"redis://127.0.0.1:{tarpit.port}/11")
    port = free_port()
    processes.api(port, API_WORKERS="1")
    key = make_api_key(engine).key

    timings = []
    for _ in range(9):
        status, _, seconds = call(port, "GET", "/api/v1/notifications", key)
        assert status == 200
        timings.append(seconds)
    status, _, seconds = call(port, "POST", "/api/v1/notifications", key, SEED)
    assert status == 202

    # A request on this machine takes a few milliseconds; the limiter may add its 50 ms deadline
    # to the first request after each failure, and nothing to the others (they skip Redis for a
    # while). Each under 0.5 s leaves room for a busy shared machine, yet is far below the
    # seconds a limiter waiting out Redis's read timeout (and retrying) costs; the median
    # under 0.1 s says the typical request paid no deadline at all.
    assert max([*timings, seconds]) < 0.5, timings
    assert statistics.median(timings) < 0.1, timings
    assert tarpit.accepted >= 1  # the limiter did try the hung Redis


def test_relay_and_worker_outlive_a_hung_postgresql_and_deliver_once_it_answers(
    processes: Processes,
    settings: Settings,
    engine: Engine,
    smtp: SmtpStandIn,
    postgres_proxy: Tarpit,
) -> None:
    # Short statement deadlines so the test waits seconds, not the defaults' minute; one worker
    # thread, so a thread stuck on a dead connection would stop all delivery.
    processes.settings = replace(
        settings,
        database_url=through(settings, postgres_proxy),
        relay_statement_timeout_ms=1000,
        database_statement_timeout_ms=1000,
        sweeper_lease_seconds=3,
        worker_concurrency=1,
    )
    relay, worker = processes.relay(), processes.worker()
    client = create_app(settings).test_client()
    key = make_api_key(engine).key
    auth = {"Authorization": f"Bearer {key}"}
    first = client.post("/api/v1/notifications", json=SEED, headers=auth)
    assert first.status_code == 202, first.json
    wait_for(lambda: status_counts(engine) == {"SENT": 1}, timeout=20, what="the first sent")

    # PostgreSQL stops answering the relay and the worker (their pooled connections included);
    # the API (straight to PostgreSQL) accepts a second notification meanwhile.
    postgres_proxy.hang()
    second = client.post("/api/v1/notifications", json=SEED, headers=auth)
    assert second.status_code == 202
    time.sleep(4)  # both run into their deadlines on connections that will never answer
    assert status_counts(engine) == {"SENT": 1, "PENDING": 1}

    postgres_proxy.forward()
    wait_for(lambda: status_counts(engine) == {"SENT": 2}, timeout=30, what="the second delivered")
    assert len(smtp.received) == 2
    assert relay.popen.poll() is None and worker.popen.poll() is None
