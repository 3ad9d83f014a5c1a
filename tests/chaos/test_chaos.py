"""Chaos: a steady load through the API while relays, workers and the API are SIGKILLed, Redis
is flushed and restarted, PostgreSQL is restarted, and the SMTP server and the webhook receiver
each fail 30 % of calls (4xx/5xx answers or silence past the client's timeout).

Then, once everything is quiet, the run is accounted for as tests/chaos/accounting.py says:
nothing accepted lost, and a delivery sent twice only by a worker kill, at most the worker's
concurrency per kill. Chunks are the default RELAY_TASK_CHUNK, so a task sends several.
Every answer other than 2xx must be one the faults explain (load.RETRIED_REFUSALS).
Seeded: CHAOS_SEED reproduces a run. ``python -m tests.chaos`` is the long run of the same
checks with more faults (tests/chaos/__main__.py).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from app.api.keys import create_api_key
from app.core.db import make_engine, migrate
from app.core.settings import Settings
from tests.chaos.accounting import problems, received_copies, summary, wait_until_finished
from tests.chaos.load import SteadyLoad
from tests.chaos.services import PrivatePostgres, PrivateRedis
from tests.helpers.net import free_port
from tests.helpers.processes import BIN, Process, Processes, settings_env
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver

LOAD_SECONDS = 30
RATE_PER_SECOND = 15
WORKER_CONCURRENCY = 4


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

    def body(index: int) -> dict[str, Any]:
        return {
            "type": "TRANSACTIONAL",
            "recipientEmail": f"chaos{index}@example.com",
            "subject": f"chaos {index}",
            "body": "steady load",
            "webhookUrl": f"{chaos.receiver.url}/chaos",
            "channels": ["EMAIL", "WEBHOOK"],
        }

    # Only a 503 database_unavailable (PostgreSQL restarting) is retried; any other refusal is
    # final and fails the test.
    load = SteadyLoad(
        port,
        key,
        body,
        RATE_PER_SECOND,
        LOAD_SECONDS,
        give_up_after=LOAD_SECONDS + 45,
        clients=6,
        pause=0.3,
    )
    injector = threading.Thread(target=inject)
    try:
        injector.start()
        load.run()
        injector.join()
        wait_until_finished(engine, 180)
        received = received_copies(engine, smtp, chaos.receiver)
        figures = summary(engine, load, received, worker_kills, faults, seed, WORKER_CONCURRENCY)
    finally:
        processes.stop_all()
        engine.dispose()

    print("\nchaos summary: " + json.dumps(figures, sort_keys=True))
    # Each kill of a worker can interrupt at most one send per task it runs (one per thread);
    # nothing else sends a delivery twice, and nothing accepted is lost.
    assert problems(figures) == [], figures
    assert figures["accepted"] >= 0.8 * load.total, figures  # the load really went through
