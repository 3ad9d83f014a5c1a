"""The relay under concurrency and failure: exactly-once publication, crash safety, priority."""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections import Counter
from typing import Any

import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from app.core.domain import Channel, Priority
from app.core.routing import TASK_NAME, priority_list
from app.core.settings import Settings
from app.core.wake import wake_relay
from app.store.outbox import ClaimedEvent
from relay.publish import TaskPublisher
from tasks.app import make_celery
from tests.helpers.api import SEED, post
from tests.helpers.db import outbox_counts, status_counts
from tests.helpers.factories import insert_backlog
from tests.helpers.processes import Processes, wait_for
from tests.standins.smtp import SmtpStandIn

EMAIL_LISTS = [Channel.EMAIL.queue + suffix for suffix in ("", ":1", ":2")]


def queued_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """Every Celery message waiting in the email queue's priority lists, decoded."""
    return [json.loads(raw) for name in EMAIL_LISTS for raw in client.lrange(name, 0, -1)]


def delivery_ids_in(messages: list[dict[str, Any]]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for message in messages:
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.update(args[0])
    return ids


def queue_length(client: redis.Redis) -> int:
    return sum(client.llen(name) for name in EMAIL_LISTS)


def all_delivery_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(i) for i in conn.scalars(text("SELECT id FROM delivery"))}


def test_the_relays_task_message_is_the_one_celery_send_task_enqueues_but_for_its_ids(
    base_settings: Settings, redis_client: redis.Redis
) -> None:
    celery = make_celery(base_settings)
    ids = [str(uuid.uuid4()) for _ in range(300)]  # long enough for argsrepr to be cut short
    queue = priority_list(Channel.EMAIL.queue, Priority.HIGH.rank)
    celery.send_task(TASK_NAME, args=(ids,), queue="email", routing_key="email", priority=0)
    theirs = json.loads(redis_client.rpop(queue))
    events = [ClaimedEvent(i, "EMAIL", Priority.HIGH.rank, None, None) for i in ids]
    assert TaskPublisher(celery, redis_client).publish(events, 500) == 1
    ours = json.loads(redis_client.rpop(queue))

    def without(message: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k not in keys}

    assert json.loads(base64.b64decode(ours["body"])) == json.loads(
        base64.b64decode(theirs["body"])
    )
    own = ("id", "root_id", "argsrepr")
    assert without(ours["headers"], *own) == without(theirs["headers"], *own)
    assert (
        ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"]
    )
    assert ours["headers"]["argsrepr"] == repr((ids,))[:1021] + "..."  # cut as send_task cuts
    unique = ("correlation_id", "delivery_tag")
    assert without(ours["properties"], *unique) == without(theirs["properties"], *unique)
    envelope = ("body", "headers", "properties")
    assert without(ours, *envelope) == without(theirs, *envelope)


def test_two_relays_publish_each_of_5000_deliveries_exactly_once(
    processes: Processes, engine: Engine, redis_client: redis.Redis
) -> None:
    insert_backlog(engine, 5000)

    first, second = processes.relay(), processes.relay()
    wait_for(lambda: outbox_counts(engine) == {"DISPATCHED": 5000}, timeout=60, what="drain")

    published = delivery_ids_in(queued_messages(redis_client))
    assert published.total() == 5000
    assert set(published) == all_delivery_ids(engine)
    assert max(published.values()) == 1
    assert status_counts(engine) == {"QUEUED": 5000}
    assert "relay cycle failed" not in first.log() + second.log()


def test_relay_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    processes: Processes, engine: Engine, redis_client: redis.Redis, smtp: SmtpStandIn
) -> None:
    insert_backlog(engine, 2000, prefix="killed")
    doomed = processes.relay(RELAY_BATCH_SIZE="2000", RELAY_TASK_CHUNK="1")
    wait_for(lambda: queue_length(redis_client) >= 50, what="publishing to begin")

    doomed.kill()

    published_before_kill = queue_length(redis_client)
    assert published_before_kill < 2000, "the relay finished its batch before it was killed"
    assert outbox_counts(engine) == {"PENDING": 2000}  # the uncommitted claim rolled back
    assert status_counts(engine) == {"PENDING": 2000}

    processes.relay(RELAY_BATCH_SIZE="2000", RELAY_TASK_CHUNK="1")
    processes.worker(WORKER_CONCURRENCY="8")
    wait_for(lambda: status_counts(engine) == {"SENT": 2000}, timeout=90, what="all sent")

    received = smtp.count_by_recipient()
    assert len(received) == 2000
    assert set(received.values()) == {1}


def test_high_priority_is_sent_before_a_2000_low_backlog_drains(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Processes,
    engine: Engine,
) -> None:
    insert_backlog(engine, 2000, priority=Priority.LOW)
    processes.relay()
    wait_for(lambda: outbox_counts(engine) == {"DISPATCHED": 2000}, timeout=30, what="backlog")
    high = post(client, auth, {**SEED, "priority": "HIGH"}).get_json()
    wait_for(lambda: outbox_counts(engine).get("PENDING", 0) == 0, what="HIGH dispatched")

    processes.worker(EMAIL_PROVIDER="log", WORKER_CONCURRENCY="1")
    wait_for(lambda: status_counts(engine) == {"SENT": 2001}, timeout=60, what="all sent")

    with engine.connect() as conn:
        low = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE d.sent_at <= h.sent_at) AS before_high,"
                " count(*) FILTER (WHERE d.sent_at > h.sent_at) AS after_high"
                " FROM delivery d JOIN notification n ON n.id = d.notification_id,"
                " (SELECT sent_at FROM delivery WHERE notification_id = :id) AS h"
                " WHERE n.priority = 'LOW'"
            ),
            {"id": high["id"]},
        ).one()
    # Sent one after another (one worker thread), so sent_at orders them: HIGH went out while
    # all but a few of the 2,000 LOW were still waiting.
    assert low.before_high < 10
    assert low.after_high >= 1990


def test_relay_finishes_and_exits_cleanly_on_sigterm(
    processes: Processes, engine: Engine, redis_client: redis.Redis
) -> None:
    insert_backlog(engine, 5000)
    # One task per delivery, 2,000 to a batch: a batch is in hand (published in part, not yet
    # committed) long enough to be signalled in.
    relay = processes.relay(RELAY_BATCH_SIZE="2000", RELAY_TASK_CHUNK="1")

    def in_hand() -> bool:
        published = queue_length(redis_client)  # read first: the dispatched count only grows
        return published > outbox_counts(engine).get("DISPATCHED", 0)

    wait_for(in_hand, interval=0.005, what="a batch published in part and not yet committed")
    relay.popen.send_signal(signal.SIGTERM)
    code = relay.popen.wait(15)

    assert code == 0
    assert "relay stopped" in relay.log()
    # The batch in hand was published whole and committed whole; the rest is left PENDING.
    dispatched = outbox_counts(engine).get("DISPATCHED", 0)
    assert dispatched in (2000, 4000), "the batch in hand was not committed whole"
    with engine.connect() as conn:
        marked = {
            str(i)
            for i in conn.scalars(
                text("SELECT delivery_id FROM outbox_event WHERE status = 'DISPATCHED'")
            )
        }
    published = delivery_ids_in(queued_messages(redis_client))
    assert set(published) == marked
    assert max(published.values()) == 1
    assert status_counts(engine) == {"QUEUED": dispatched, "PENDING": 5000 - dispatched}
    # And the signal did come mid-batch: the relay went on publishing after it.
    _, _, after_signal = relay.log().partition("relay received signal")
    assert "published 1 EMAIL" in after_signal, "the signal came between batches"

    # Nothing lost: the next relay publishes the rest, and nothing twice.
    processes.relay(RELAY_BATCH_SIZE="2000", RELAY_TASK_CHUNK="1")
    wait_for(lambda: outbox_counts(engine) == {"DISPATCHED": 5000}, timeout=60, what="drain")
    published = delivery_ids_in(queued_messages(redis_client))
    assert set(published) == all_delivery_ids(engine) and published.total() == 5000


def test_accept_wakes_the_relay_long_before_the_poll_interval(
    client: FlaskClient, auth: dict[str, str], processes: Processes, engine: Engine
) -> None:
    processes.relay(RELAY_POLL_INTERVAL_MS="60000", SWEEPER_INTERVAL_SECONDS="600")

    post(client, auth, SEED)

    wait_for(lambda: status_counts(engine) == {"QUEUED": 1}, timeout=10, what="wake-up")


def test_relay_still_polls_when_the_wake_up_is_lost(processes: Processes, engine: Engine) -> None:
    processes.relay(RELAY_POLL_INTERVAL_MS="500")

    insert_backlog(engine, 3)  # written without any wake-up, as after a lost signal

    wait_for(lambda: status_counts(engine) == {"QUEUED": 3}, timeout=10, what="poll")


def test_wake_ups_right_after_a_claim_are_gathered_into_one_task(
    processes: Processes, engine: Engine, redis_client: redis.Redis
) -> None:
    gather = 1.5
    processes.relay(
        RELAY_GATHER_MS=str(int(gather * 1000)),
        RELAY_POLL_INTERVAL_MS="60000",
        SWEEPER_INTERVAL_SECONDS="600",
    )

    def attempt(n: int) -> tuple[list[int], bool]:
        """One lead row, claimed at once, then a stream of four right after that claim: the
        tasks published, and whether the stream really fell within the claim's gather window."""
        time.sleep(gather)  # past the window of any earlier claim: the lead is claimed at once
        for name in EMAIL_LISTS:
            redis_client.delete(name)
        # The lead's claim starts after its wake-up, so no earlier than this: its window ends
        # no earlier than one gather later.
        window_ends_after = time.monotonic() + gather
        insert_backlog(engine, 1, prefix=f"lead{n}-")
        wake_relay(redis_client)
        wait_for(lambda: queue_length(redis_client) == 1, timeout=10, interval=0.01, what="lead")
        # A steady stream: one row committed and the relay woken every 50 ms, as API batches do.
        for index in range(4):
            insert_backlog(engine, 1, prefix=f"stream{n}-{index}-")
            wake_relay(redis_client)
            time.sleep(0.05)
        in_window = time.monotonic() < window_ends_after
        wait_for(lambda: outbox_counts(engine) == {"DISPATCHED": 5 * (n + 1)}, timeout=10)
        tasks = [delivery_ids_in([message]).total() for message in queued_messages(redis_client)]
        return tasks, in_window

    # The window is counted from the relay's claim; a machine too busy to commit four rows
    # within it (seen under load) makes the stream late, which says nothing about the relay:
    # such an attempt is repeated, a split stream inside the window fails the test.
    for n in range(3):
        tasks, in_window = attempt(n)
        if in_window:
            break
    else:
        raise AssertionError("three attempts could not stream four rows within the window")
    # The stream's first wake-up came within the gather window of the lead's claim, so the
    # relay let every row arrive and published them together; without it, one task per wake-up.
    assert sorted(tasks) == [1, 4]


def test_the_relay_vacuums_the_outbox_it_churns(processes: Processes, engine: Engine) -> None:
    def outbox_stats() -> tuple[int, int]:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables"
                    " WHERE relname = 'outbox_event'"
                )
            ).one()
        return int(row[0]), int(row[1])

    vacuums_before, _ = outbox_stats()
    processes.relay(RELAY_VACUUM_INTERVAL_SECONDS="0.5", RELAY_POLL_INTERVAL_MS="200")
    insert_backlog(engine, 300)
    wait_for(lambda: outbox_counts(engine) == {"DISPATCHED": 300}, timeout=30, what="dispatch")

    # Each dispatch left a dead row version; the relay's own VACUUM (not autovacuum, which
    # vacuum_count does not count) takes them away.
    def vacuumed() -> tuple[int, int] | None:
        vacuums, dead = outbox_stats()
        return (vacuums, dead) if vacuums > vacuums_before and dead == 0 else None

    assert wait_for(vacuumed, timeout=15, what="a vacuum after the dispatch") is not None
