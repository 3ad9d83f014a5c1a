"""A Redis that stops answering (accepts, never replies) and then answers again: the relay and
the Celery workers keep running without flooding their logs, and every notification accepted
before, during and after the hang is delivered once it answers. The API's routes that use
Redis (readiness, the inbox's marks) pay a bounded wait: readiness says Redis is unreachable,
a mark is committed and answered, its live push is best effort."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine

from app.api.factory import create_app
from app.core.db import transaction
from app.core.domain import Channel
from app.core.settings import Settings
from app.store import inbox
from tests.helpers.api import SEED, http
from tests.helpers.db import status_counts
from tests.helpers.factories import make_api_key, make_notification
from tests.helpers.net import free_port
from tests.helpers.processes import Process, Processes, wait_for
from tests.standins.smtp import SmtpStandIn
from tests.standins.tarpit import Tarpit

HANG_SECONDS = 8.0


@pytest.fixture
def redis_proxy(settings: Settings) -> Iterator[Tarpit]:
    """The test's Redis through a proxy the test can stall (tests/standins/tarpit.py)."""
    url = urlsplit(settings.redis_url)
    proxy = Tarpit((url.hostname or "127.0.0.1", url.port or 6379)).start()
    proxy.forward()
    yield proxy
    proxy.stop()


def through(settings: Settings, proxy: Tarpit) -> str:
    url = urlsplit(settings.redis_url)
    return url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


def lines(process: Process) -> int:
    return len(process.log().splitlines())


def test_relay_and_worker_ride_out_a_hung_redis_and_deliver_everything_once_it_answers(
    processes: Processes,
    settings: Settings,
    engine: Engine,
    smtp: SmtpStandIn,
    redis_proxy: Tarpit,
) -> None:
    processes.settings = replace(settings, redis_url=through(settings, redis_proxy))
    relay, worker = processes.relay(), processes.worker()
    # The API reaches Redis directly: what it accepts during the hang is committed, and its
    # wake-ups are lost to the relay (which polls meanwhile).
    client = create_app(settings).test_client()
    auth = {"Authorization": f"Bearer {make_api_key(engine).key}"}

    def submit(name: str) -> None:
        body = {**SEED, "recipientEmail": f"{name}@example.com"}
        response = client.post("/api/v1/notifications", json=body, headers=auth)
        assert response.status_code == 202, response.json

    for i in range(3):
        submit(f"before{i}")
    wait_for(lambda: status_counts(engine) == {"SENT": 3}, timeout=20, what="the first sent")

    redis_proxy.stall()
    hung_at = time.monotonic()
    logged = {p.name: lines(p) for p in (relay, worker)}
    for i in range(3):
        submit(f"during{i}")
        time.sleep(HANG_SECONDS / 4)
    time.sleep(max(0.0, hung_at + HANG_SECONDS - time.monotonic()))
    # Neither process died, nor spun: a few lines per second of hang at most.
    assert relay.popen.poll() is None and worker.popen.poll() is None
    grown = {p.name: lines(p) - logged[p.name] for p in (relay, worker)}
    assert max(grown.values()) <= 3 * HANG_SECONDS, (grown, relay.log()[-3000:])

    redis_proxy.resume()
    for i in range(3):
        submit(f"after{i}")

    # Celery's consumer and the relay's publisher were waiting on connections that now answer.
    wait_for(lambda: status_counts(engine) == {"SENT": 9}, timeout=20, what="all nine sent")
    recipients = sorted(rcpt for r in smtp.received for rcpt in r.rcpt_tos)
    assert recipients == sorted(
        f"{when}{i}@example.com" for when in ("before", "during", "after") for i in range(3)
    )
    assert relay.popen.poll() is None and worker.popen.poll() is None
    # A Redis outage is one warning line per failed relay cycle, not a traceback.
    assert "Traceback" not in relay.log() and "Traceback" not in worker.log()


def stored_item(engine: Engine, user_id: str) -> str:
    """An unread inbox item of ``user_id``, as the IN_APP worker stores it; its id."""
    made = make_notification(engine, channels=(Channel.IN_APP,), user_id=user_id)
    with transaction(engine) as conn:
        item, _ = inbox.store(
            conn,
            project_id="default",
            user_id=user_id,
            delivery_id=made.deliveries[Channel.IN_APP],
            notification_id=made.id,
            category="TRANSACTIONAL",
            title="t",
            body="b",
            data=None,
        )
    return str(item["id"])


def unread(engine: Engine, user_id: str) -> int:
    with transaction(engine) as conn:
        return inbox.unread_count(conn, "default", user_id)


def test_readiness_and_inbox_marks_answer_well_within_the_deadline_when_redis_hangs(
    processes: Processes, engine: Engine, tarpit: Tarpit
) -> None:
    port = free_port()
    processes.api(port, API_WORKERS="1", REDIS_URL=f"redis://127.0.0.1:{tarpit.port}/11")
    api = f"http://127.0.0.1:{port}/api/v1"
    key = make_api_key(engine).key
    first, second, third = (stored_item(engine, "ivy") for _ in range(3))

    def timed(method: str, path: str) -> tuple[int, object, float]:
        started = time.monotonic()
        status, _, body = http(method, f"{api}{path}", key)
        return status, body, time.monotonic() - started

    ready = timed("GET", "/health/ready")
    read = timed("POST", f"/users/ivy/inbox/{first}/read")
    deleted = timed("DELETE", f"/users/ivy/inbox/{second}")
    read_all = timed("POST", "/users/ivy/inbox/read-all")

    assert ready[:2] == (
        503,
        {"status": "unavailable", "checks": {"postgres": "ok", "redis": "unreachable"}},
    )
    assert (read[0], deleted[0], read_all[:2]) == (200, 204, (200, {"marked": 1, "unreadCount": 0}))
    # Each waited for Redis once, for at most its deadline, and no longer (the rate limiter's
    # 50 ms included): far inside the 5 s every route must answer within.
    assert max(t[2] for t in (ready, read, deleted, read_all)) < 1.5, (ready, read, deleted)
    assert unread(engine, "ivy") == 0 and third  # committed, whatever Redis did
    assert tarpit.accepted >= 1  # they did try the hung Redis


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    running = Tarpit().start()
    yield running
    running.stop()
