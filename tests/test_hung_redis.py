"""A Redis that stops answering (accepts, never replies) and then answers again: the relay and
the Celery workers keep running without flooding their logs, and every notification accepted
before, during and after the hang is delivered once it answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine

from app.api.factory import create_app
from app.core.settings import Settings
from tests.helpers.api import SEED
from tests.helpers.db import status_counts
from tests.helpers.factories import make_api_key
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
