"""Chaos: a steady load through the API while relays, workers and the API are SIGKILLed, Redis
is flushed and restarted, PostgreSQL is restarted, and the SMTP server and the webhook receiver
each fail 30 % of calls (4xx/5xx answers or silence past the client's timeout).

Then, once everything is quiet, every notification the API answered 2xx must be in the
database with every delivery finished (SENT, FAILED with a reason, EXPIRED or CANCELLED), and
the provider stand-ins must have received every SENT delivery, and every delivery they received
must be recorded SENT. A delivery may arrive twice only because a worker was killed while its
provider call was in flight (sent, or answered and not yet recorded): each copy after the first
is put down to the first worker kill between it and the copy before, and no kill may account
for more than the worker's concurrency (one message per task it was running), nor may any
duplicate lack a kill. Chunks are the default RELAY_TASK_CHUNK, so a task sends several.
Every answer other than 2xx must be one the faults explain (EXPECTED_REFUSALS).
Seeded: CHAOS_SEED reproduces a run.
"""

from __future__ import annotations

import bisect
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from app.core.db import make_engine, migrate
from app.core.settings import Settings
from tests.chaos.services import PrivatePostgres, PrivateRedis
from tests.helpers.net import free_port
from tests.helpers.processes import BIN, Process, Processes, settings_env
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver

LOAD_SECONDS = 30
RATE_PER_SECOND = 15
WORKER_CONCURRENCY = 4
TERMINAL = {"SENT", "FAILED", "EXPIRED", "CANCELLED"}
# The answers other than 2xx the injected faults explain, by (status, error code); the client
# retries them with the same Idempotency-Key. Anything else fails the test.
EXPECTED_REFUSALS = {
    (503, "database_unavailable"): "PostgreSQL restarting: nothing was written, retry",
}


@dataclass(frozen=True)
class Chaos:
    settings: Settings
    postgres: PrivatePostgres
    broker: PrivateRedis
    smtp: SmtpStandIn
    receiver: WebhookReceiver


@pytest.fixture
def chaos(base_settings: Settings, tmp_path: Path) -> Iterator[Chaos]:
    postgres, broker = PrivatePostgres(), PrivateRedis(tmp_path)
    postgres.start()
    broker.start()
    smtp = SmtpStandIn().start()
    receiver = WebhookReceiver()
    receiver.start()
    settings = replace(
        base_settings,
        database_url=postgres.url,
        redis_url=broker.url,
        email_provider="smtp",
        smtp_port=smtp.port,
        smtp_timeout_seconds=1.5,
        webhook_provider="http",
        webhook_allowed_networks="127.0.0.1/32",
        webhook_connect_timeout_seconds=1.0,
        webhook_read_timeout_seconds=1.5,
        delivery_max_attempts=8,
        retry_backoff_base_seconds=0.2,
        retry_backoff_max_seconds=2.0,
        sweeper_lease_seconds=4,
        sweeper_interval_seconds=1.0,
        relay_poll_interval_ms=500,
        worker_concurrency=WORKER_CONCURRENCY,
        api_workers=2,
        rate_limit_per_second=0.0,
    )
    migrate(settings.database_url)
    try:
        yield Chaos(settings, postgres, broker, smtp, receiver)
    finally:
        receiver.stop()
        smtp.stop()
        broker.stop()
        postgres.stop()


@dataclass
class Load:
    """Open-loop clients: request i is due at start + i/rate and is retried (same
    Idempotency-Key) until the API answers 2xx or the load window closes."""

    port: int
    key: str
    total: int
    webhook_url: str
    accepted: dict[int, str] = field(default_factory=dict)
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)  # (status, error code)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, clients: int = 6) -> None:
        start, cursor = time.monotonic(), iter(range(self.total))
        give_up = start + LOAD_SECONDS + 45

        def client() -> None:
            while True:
                with self.lock:
                    index = next(cursor, None)
                if index is None:
                    return
                time.sleep(max(0.0, start + index / RATE_PER_SECOND - time.monotonic()))
                while time.monotonic() < give_up and not self._send(index):
                    time.sleep(0.3)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _send(self, index: int) -> bool:
        body = {
            "type": "TRANSACTIONAL",
            "recipientEmail": f"chaos{index}@example.com",
            "subject": f"chaos {index}",
            "body": "steady load",
            "webhookUrl": self.webhook_url,
            "channels": ["EMAIL", "WEBHOOK"],
        }
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"chaos-{index}",
        }
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("POST", "/api/v1/notifications", json.dumps(body), headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except (OSError, http.client.HTTPException):
            # The API is down, or was killed mid-answer (IncompleteRead): try again with the same
            # Idempotency-Key, which replays the notification if it had been committed.
            return False
        if 200 <= response.status < 300:
            with self.lock:
                self.accepted[index] = json.loads(payload)["id"]
            return True
        refusal = (response.status, _error_code(payload))
        with self.lock:
            self.refused[refusal] += 1
        return refusal not in EXPECTED_REFUSALS  # an unexpected refusal is not retried


def _error_code(payload: bytes) -> str:
    """The error document's code, or what the body was if it was not one."""
    try:
        return str(json.loads(payload)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"not an error document: {payload[:80]!r}"


def test_chaos_under_load_loses_nothing_and_sends_twice_only_in_the_documented_window(
    chaos: Chaos, tmp_path: Path
) -> None:
    settings, postgres, broker, smtp = chaos.settings, chaos.postgres, chaos.broker, chaos.smtp
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    smtp.fail_randomly(0.3, seed, stall_seconds=3.0)
    chaos.receiver.fail_randomly(0.3, seed)
    engine = make_engine(settings, pool_size=2)
    key = create_api_key(engine, "chaos").key
    processes = Processes(settings, tmp_path)
    port = free_port()

    def start_api() -> Process:
        return processes.spawn(
            "api",
            [str(BIN / "notification-service"), "api", "--host", "127.0.0.1", "--port", str(port)],
            settings_env(settings),
            ready="Booting worker",
        )

    def start_worker() -> Process:
        return processes.worker("email,webhook")

    running = {"api": start_api(), "relay": processes.relay(), "worker": start_worker()}
    restart = {"api": start_api, "relay": processes.relay, "worker": start_worker}
    faults: Counter[str] = Counter()
    worker_kills: list[float] = []  # when each worker was killed (time.monotonic())

    def inject() -> None:
        plan = ["kill relay", "kill worker", "kill api", "flush redis", "restart postgres"] * 2
        rng.shuffle(plan)
        moments = sorted(rng.uniform(3, LOAD_SECONDS - 3) for _ in plan)
        began = time.monotonic()
        for moment, fault in zip(moments, plan, strict=True):
            time.sleep(max(0.0, began + moment - time.monotonic()))
            if fault.startswith("kill"):
                name = fault.split()[1]
                running[name].kill()
                if name == "worker":
                    worker_kills.append(time.monotonic())
                time.sleep(rng.uniform(0.2, 1.5))
                running[name] = restart[name]()
            elif fault == "flush redis":
                broker.flush_and_restart()
            else:
                postgres.restart()
            faults[fault] += 1

    load = Load(port, key, LOAD_SECONDS * RATE_PER_SECOND, f"{chaos.receiver.url}/chaos")
    injector = threading.Thread(target=inject)
    try:
        injector.start()
        load.run()
        injector.join()
        deadline = time.monotonic() + 180
        while not _all_finished(engine) and time.monotonic() < deadline:
            time.sleep(1)
        received = _received(smtp, chaos.receiver, engine)
        summary = _summary(engine, load, received, worker_kills, faults, seed)
    finally:
        processes.stop_all()
        engine.dispose()

    print("\nchaos summary: " + json.dumps(summary, sort_keys=True))
    assert summary["unexpected_non_2xx"] == {}, summary
    assert summary["lost"] == 0, summary
    assert summary["received_but_not_recorded_sent"] == 0, summary
    assert summary["failed_without_reason"] == 0, summary
    # Each kill of a worker can interrupt at most one send per task it runs (one per thread);
    # nothing else sends a delivery twice.
    assert max(summary["duplicates_per_worker_kill"], default=0) <= WORKER_CONCURRENCY, summary
    assert summary["duplicates_without_a_kill"] == 0, summary
    assert summary["accepted"] >= 0.8 * load.total, summary  # the load really went through


def _all_finished(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return not conn.scalar(
                text(
                    "SELECT count(*) FROM delivery WHERE status NOT IN"
                    " ('SENT', 'FAILED', 'EXPIRED', 'CANCELLED')"
                )
            )
    except Exception:
        return False


def _received(
    smtp: SmtpStandIn, receiver: WebhookReceiver, engine: Engine
) -> dict[str, list[float]]:
    """When each delivery reached its provider (time.monotonic(), one entry per copy): emails
    by Message-ID (the delivery id), webhooks answered 200 by X-Notification-Id (one WEBHOOK
    delivery per notification)."""
    received: dict[str, list[float]] = {}
    for mail in list(smtp.received):
        received.setdefault(mail.message["Message-ID"].strip("<>").split("@")[0], []).append(
            mail.at
        )
    with engine.connect() as conn:
        webhook_of = {
            str(n): str(d)
            for n, d in conn.execute(
                text("SELECT notification_id, id FROM delivery WHERE channel = 'WEBHOOK'")
            )
        }
    for request in list(receiver.accepted):
        notification_id = request.headers.get("x-notification-id", "")
        received.setdefault(webhook_of.get(notification_id, notification_id), []).append(request.at)
    return received


def _duplicates_by_kill(
    received: dict[str, list[float]], kills: list[float]
) -> tuple[list[int], int]:
    """Each copy after a delivery's first, put down to the first worker kill between it and the
    copy before (whose outcome that kill kept from being recorded): the count per kill, and the
    copies no kill explains."""
    per_kill, unexplained = [0] * len(kills), 0
    for times in received.values():
        for before, again in pairwise(sorted(times)):
            kill = bisect.bisect_left(kills, before)
            if kill < len(kills) and kills[kill] <= again:
                per_kill[kill] += 1
            else:
                unexplained += 1
    return per_kill, unexplained


def _summary(
    engine: Engine,
    load: Load,
    received: dict[str, list[float]],
    worker_kills: list[float],
    faults: Counter[str],
    seed: int,
) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT n.id AS notification_id, d.id AS delivery_id, d.status, d.error_code,"
                " d.last_error FROM notification n JOIN delivery d ON d.notification_id = n.id"
            )
        ).all()
    by_notification = {str(r.notification_id): r for r in rows}
    missing = [i for i in load.accepted.values() if i not in by_notification]
    unfinished = [r for r in rows if r.status not in TERMINAL]
    sent_never_received = [
        r for r in rows if r.status == "SENT" and not received.get(str(r.delivery_id))
    ]
    # Every delivery a stand-in accepted, including any no delivery row accounts for.
    sent = {str(r.delivery_id) for r in rows if r.status == "SENT"}
    received_not_sent = [i for i in received if i not in sent]
    statuses = Counter(r.status for r in rows)
    per_kill, unexplained = _duplicates_by_kill(received, worker_kills)
    return {
        "seed": seed,
        "accepted": len(load.accepted),
        "answered_non_2xx": {f"{s} {c}": n for (s, c), n in load.refused.items()},
        "unexpected_non_2xx": {
            f"{s} {c}": n for (s, c), n in load.refused.items() if (s, c) not in EXPECTED_REFUSALS
        },
        "sent": statuses["SENT"],
        "failed": statuses["FAILED"],
        "failed_without_reason": sum(
            1 for r in rows if r.status == "FAILED" and not (r.error_code and r.last_error)
        ),
        "duplicates": sum(len(times) - 1 for times in received.values()),
        "duplicates_per_worker_kill": per_kill,
        "duplicates_without_a_kill": unexplained,
        "received_but_not_recorded_sent": len(received_not_sent),
        "lost": len(missing) + len(unfinished) + len(sent_never_received),
        "faults": dict(faults),
    }
