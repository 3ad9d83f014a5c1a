"""The relay process: wake on a Redis signal (or the poll interval), drain due outbox rows,
sweep stuck deliveries, apply retention."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import Connection, Engine

from app.core import metrics
from app.core.db import retried_transaction
from app.core.domain import Channel
from app.core.process import ProcessContext
from app.core.routing import priority_lists
from app.core.settings import Settings
from app.core.wake import WakeListener
from app.store import outbox
from app.store.outbox import ClaimedEvent
from relay.publish import TaskPublisher
from relay.retention import purge
from relay.sweeper import sweep_once
from tasks.app import make_celery

log = logging.getLogger(__name__)


def dispatch_batch(engine: Engine, publisher: TaskPublisher, settings: Settings) -> int:
    """Claim, publish and mark one batch in one transaction; returns rows dispatched."""

    def claim_and_publish(conn: Connection) -> list[ClaimedEvent]:
        events = outbox.claim_due(conn, settings.relay_batch_size)
        if events:
            # Published before the commit: if this process dies now, the rows roll back to
            # PENDING and are published again; the worker's guarded claim absorbs the duplicate
            # (as it does when a lost connection makes retried_transaction publish them twice).
            publisher.publish(events, settings.relay_task_chunk)
        return events

    events = retried_transaction(engine, claim_and_publish)
    if events:
        metrics.RELAY_BATCH_SIZE.observe(len(events))
        for channel, count in Counter(e.channel for e in events).items():
            metrics.OUTBOX_EVENTS_PROCESSED.labels(channel).inc(count)
    return len(events)


def export_gauges(engine: Engine, broker: redis.Redis) -> None:
    """Outbox lag and queue depths are read when Prometheus scrapes, so they are never stale."""

    def outbox_lag() -> float:
        with engine.connect() as conn:
            return outbox.lag_seconds(conn)

    def depth(queue: str) -> Callable[[], float]:
        lists = priority_lists(queue)
        return lambda: float(sum(broker.llen(name) for name in lists))

    metrics.OUTBOX_LAG.set_function(outbox_lag)
    for channel in Channel:
        metrics.QUEUE_DEPTH.labels(channel.queue).set_function(depth(channel.queue))


def run(settings: Settings, stop: threading.Event) -> None:
    """Relay until ``stop`` is set; the batch in hand is always finished first."""

    # Claims under load, sweeps, retention batches and the outbox VACUUM may legitimately run
    # longer than an API statement: the relay has a statement deadline of its own.
    process = ProcessContext.connect(
        settings,
        pool_size=2,
        redis_timeout_seconds=5.0,
        statement_timeout_ms=settings.relay_statement_timeout_ms,
    )
    engine = process.engine
    publisher = TaskPublisher(make_celery(settings), process.redis)
    listener = WakeListener(settings)
    listener.subscribe()  # before "started": a wake-up sent after that line is never missed
    export_gauges(engine, process.redis)
    metrics.serve_metrics(settings.relay_metrics_port, "relay")
    poll_seconds = settings.relay_poll_interval_ms / 1000
    gather_seconds = settings.relay_gather_ms / 1000
    last_claim = 0.0
    next_sweep = next_retention = next_vacuum = 0.0
    log.info("relay started: batch %d, poll %.1fs", settings.relay_batch_size, poll_seconds)
    try:
        while not stop.is_set():
            try:
                # Woken again right after a claim (a steady stream of accepts wakes the relay
                # once per committed API batch): let the rows gather, so they go out as one
                # claim and larger tasks, which a worker delivers many times faster.
                stop.wait(max(0.0, last_claim + gather_seconds - time.monotonic()))
                last_claim = time.monotonic()
                while not stop.is_set() and (
                    dispatch_batch(engine, publisher, settings) == settings.relay_batch_size
                ):
                    pass
                if settings.relay_vacuum_interval_seconds and time.monotonic() >= next_vacuum:
                    next_vacuum = time.monotonic() + settings.relay_vacuum_interval_seconds
                    with process.statements.connect() as conn:
                        outbox.vacuum(conn)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + settings.retention_interval_seconds
                    purge(engine, settings)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + settings.sweeper_interval_seconds
                    redriven = sweep_once(engine, settings)
                    if redriven:
                        metrics.SWEEPER_REDRIVEN.inc(redriven)
                        continue
            except redis.RedisError as exc:
                # An outage, not a bug: one line per cycle (the claim rolled back, nothing lost).
                log.warning(
                    "relay cycle failed, Redis unavailable (%s: %s); retrying after the poll"
                    " interval",
                    type(exc).__name__,
                    exc,
                )
            except Exception:
                log.exception("relay cycle failed; retrying after the poll interval")
            listener.wait(poll_seconds, stop)
    finally:
        listener.close()
        process.close()
        log.info("relay stopped")


def main(settings: Settings) -> None:
    stop = threading.Event()

    def _graceful(signum: int, _frame: Any) -> None:
        log.info("relay received signal %d; finishing the batch in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    run(settings, stop)
