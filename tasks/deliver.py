"""The delivery task: claim → send through the channel's provider → record, retry per item."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from celery import Task, shared_task
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from app.core import metrics
from app.core.db import retried_transaction, transaction
from app.core.domain import Channel, DeliveryStatus
from app.core.logs import log_context
from app.core.process import ProcessContext
from app.core.routing import TASK_NAME
from app.core.settings import Settings
from app.store import deliveries
from app.store.deliveries import DeliveryResult
from tasks.app import app_settings
from tasks.channels import build_providers
from tasks.channels.base import (
    InvalidRecipient,
    Message,
    Outcome,
    Permanent,
    Provider,
    Retryable,
    Sent,
)
from tasks.rendering import render_chunk

log = logging.getLogger(__name__)


class Leases:
    """Keeps the sweeper off the deliveries this process is sending.

    The sweeper re-drives a SENDING delivery once its ``updated_at`` is older than the lease
    (its worker must have died). While this process holds any delivery, one thread renews all
    of them with one statement every third of a lease, so a chunk that takes longer than the
    lease to send is not re-driven under its live sender, and a dead process's deliveries are
    re-driven one lease after it died. The thread runs only while something is held."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self._engine = engine
        self._interval = lease_seconds / 3
        self._held: dict[uuid.UUID, int] = {}  # delivery id → the attempt this process holds
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    @contextmanager
    def holding(self, messages: Sequence[Message]) -> Iterator[Callable[[Message], None]]:
        """Holds every message's delivery until released (the yielded function) or the block
        ends."""
        with self._lock:
            self._held.update((m.delivery_id, m.attempt) for m in messages)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="lease-renewer", daemon=True
                )
                self._renewer.start()
        try:
            yield self.release
        finally:
            for message in messages:
                self.release(message)

    def release(self, message: Message) -> None:
        with self._lock:
            if self._held.get(message.delivery_id) == message.attempt:
                del self._held[message.delivery_id]

    def _renew(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                held = list(self._held.items())
                if not held:
                    self._renewer = None
                    return
            try:
                with transaction(self._engine) as conn:
                    deliveries.renew_leases(conn, held)
            except SQLAlchemyError:
                log.warning("could not renew the lease of %d deliveries", len(held), exc_info=True)


@dataclass(frozen=True, kw_only=True)
class WorkerContext(ProcessContext):
    """What a worker process holds: built on first use, again in each forked child. Its
    ``statements`` engine claims, records (each one guarded statement) and renews the leases
    of what it is sending; its ``engine`` serves the providers that keep channel state in the
    database (PUSH devices, the inbox)."""

    providers: dict[Channel, Provider]
    leases: Leases

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        pool_size = max(2, settings.worker_concurrency)
        process = ProcessContext.connect(
            settings, pool_size=pool_size, pre_ping=True, statements_pool_size=pool_size
        )
        return cls.extend(
            process,
            providers=build_providers(process),
            leases=Leases(process.statements, settings.sweeper_lease_seconds),
        )


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context(settings: Settings) -> WorkerContext:
    global _context
    if _context is not None and _context.pid == os.getpid():
        return _context
    with _context_lock:  # the threads pool: build one context, not one per thread
        if _context is None or _context.pid != os.getpid():
            _context = WorkerContext.build(settings)
    return _context


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter, no sooner than the provider asked, never past the cap."""
    ceiling = min(
        settings.retry_backoff_max_seconds,
        settings.retry_backoff_base_seconds * 2.0 ** max(0, attempt - 1),
    )
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, settings.retry_backoff_max_seconds)


def judge(settings: Settings, message: Message, outcome: Outcome) -> DeliveryResult:
    """Turn a provider outcome into the status to record."""
    match outcome:
        case Sent(provider_message_id=pid):
            return DeliveryResult(message.delivery_id, DeliveryStatus.SENT, provider_message_id=pid)
        case Retryable(code=code, reason=reason, retry_after=retry_after):
            if message.attempt >= settings.delivery_max_attempts:
                reason = f"{reason} (gave up after {message.attempt} attempts)"
                return DeliveryResult(
                    message.delivery_id, DeliveryStatus.FAILED, None, code, reason
                )
            delay = backoff_seconds(settings, message.attempt, retry_after)
            return DeliveryResult(
                message.delivery_id, DeliveryStatus.RETRYING, None, code, reason, delay
            )
        case Permanent(code=code, reason=reason) | InvalidRecipient(code=code, reason=reason):
            return DeliveryResult(message.delivery_id, DeliveryStatus.FAILED, None, code, reason)
    raise TypeError(f"not an outcome: {outcome!r}")


def send_all(context: WorkerContext, messages: Sequence[Message]) -> Iterator[DeliveryResult]:
    """Each message's result as soon as its provider answered it, one channel after another.
    The provider sends a message only when the previous result has been taken, so the caller
    records each before the next is sent."""
    by_channel = groupby(sorted(messages, key=lambda m: m.channel), key=lambda m: m.channel)
    for channel, group in by_channel:
        batch = list(group)
        outcomes = _outcomes(context.providers.get(channel), channel, batch)
        for message, outcome in zip(batch, outcomes, strict=True):
            yield judge(context.settings, message, outcome)


def _outcomes(
    provider: Provider | None, channel: Channel, batch: list[Message]
) -> Iterator[Outcome]:
    """The provider's outcome of each message of ``batch``, in order, whatever the provider does.

    Providers turn an exception while sending one message into that message's outcome; if one
    raises all the same (or answers too few), only the messages it has not answered yet are
    failed as retryable: the answered ones are recorded already and are never sent again."""
    if provider is None:
        failure = Retryable("no_provider", f"no {channel.value} provider configured")
        yield from [failure] * len(batch)
        return
    answered, spent = 0, 0.0
    failure = Retryable("provider_error", "the provider gave no outcome for this message")
    sending: Iterator[Outcome] | None = None
    try:
        while answered < len(batch):
            started = time.perf_counter()
            try:
                if sending is None:
                    sending = iter(provider.send(batch))
                outcome = next(sending)
            except StopIteration:
                log.error("the %s provider answered %d of %d", channel.value, answered, len(batch))
                break
            except Exception as exc:
                log.exception("the %s provider raised", channel.value)
                failure = Retryable("provider_error", f"provider raised {type(exc).__name__}")
                break
            finally:
                spent += time.perf_counter() - started
            answered += 1
            yield outcome
        yield from [failure] * (len(batch) - answered)
    finally:
        close = getattr(sending, "close", None)
        if close is not None:
            close()  # a provider's connection for the chunk ends with it
        metrics.PROVIDER_CALL_DURATION.labels(channel.value).observe(spent)


def record(context: WorkerContext, result: DeliveryResult) -> str | None:
    """Records one outcome with one guarded autocommit statement; returns the status applied
    (None when this task no longer holds the delivery). Each task thread commits its own:
    PostgreSQL flushes the commits that arrive together with one WAL write, which a recorder
    thread batching them client-side did not beat and which added two thread hand-offs per
    message (bench/RESULTS.md, 2026-12-04 late run). The provider has answered, and a lost
    outcome would be sent again: a database that is briefly away (a restart, a failover) is
    waited for up to one lease, about as long as the sweeper leaves the delivery to this task."""
    deadline = time.monotonic() + context.settings.sweeper_lease_seconds
    pause = 0.1
    while True:
        try:
            applied = retried_transaction(
                context.statements, lambda conn: deliveries.record_outcomes(conn, [result])
            )
            return applied.get(result.delivery_id)
        except (OperationalError, InterfaceError):
            if time.monotonic() + pause > deadline:
                raise
            log.warning("recording delivery %s failed; trying again", result.delivery_id)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def deliver_ids(context: WorkerContext, delivery_ids: Sequence[str]) -> list[DeliveryResult]:
    """Deliver what this task can claim, each outcome durable before the next message is sent
    (a worker killed at any moment re-sends at most the message this task was sending or
    recording); returns the results that must be retried later."""
    lease = context.settings.sweeper_lease_seconds
    claimed = retried_transaction(
        context.statements,
        lambda conn: deliveries.claim_for_sending(conn, delivery_ids, lease),
    )
    rows = {row.id: row for row in claimed}
    for row in claimed:
        if row.status != DeliveryStatus.SENDING:  # settled or deferred at claim: never sent
            _observe(row, row.status, row.error_code)
    messages = {
        row.id: Message.from_row(row) for row in claimed if row.status == DeliveryStatus.SENDING
    }
    # Templated deliveries get their recipient's content (or fail unsent if it cannot render).
    messages, unrenderable = render_chunk(context.statements, context.settings, claimed, messages)
    for failure in unrenderable:
        status = record(context, failure)
        _observe(rows[failure.delivery_id], status or "not recorded", failure.error_code)
    if not messages:
        return []
    retry: list[DeliveryResult] = []
    with context.leases.holding(list(messages.values())) as release:
        for result in send_all(context, list(messages.values())):
            status = record(context, result)
            release(messages[result.delivery_id])
            _observe(
                rows[result.delivery_id],
                status or "not recorded (no longer SENDING)",
                result.error_code,
            )
            if status == DeliveryStatus.RETRYING:
                retry.append(result)
    return retry


def _observe(row: Any, status: str, error_code: str | None) -> None:
    """One log line and the metrics for what happened to one delivery."""
    channel = row.channel
    if status == DeliveryStatus.SENT:
        metrics.NOTIFICATIONS_DELIVERED.labels(channel).inc()
        latency = (datetime.now(UTC) - row.created_at).total_seconds()
        metrics.DELIVERY_LATENCY.labels(channel).observe(max(latency, 0.0))
    elif status in (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED):
        metrics.NOTIFICATIONS_FAILED.labels(channel, error_code or "unknown").inc()
    elif status == DeliveryStatus.RETRYING:
        metrics.NOTIFICATION_RETRIES.labels(channel).inc()
    elif status == DeliveryStatus.SKIPPED:
        metrics.NOTIFICATIONS_SKIPPED.labels(channel, error_code or "unknown").inc()
    with log_context(
        request_id=row.request_id, notification_id=row.notification_id, delivery_id=row.id
    ):
        log.info(
            "delivery %s %s%s",
            row.id,
            status,
            f" ({error_code})" if error_code else "",
            extra={"channel": channel, "status": status, "attempt": row.attempts},
        )


def deliver(self: Task, delivery_ids: list[str]) -> None:
    """Deliver a chunk of one channel's deliveries. A retryable failure is retried on its own,
    never by re-running the ids that already succeeded."""
    for result in deliver_ids(worker_context(app_settings(self.app)), delivery_ids):
        self.retry(
            args=([str(result.delivery_id)],),
            countdown=result.retry_in_seconds,
            throw=False,
        )


# Registered with whichever app the worker runs (tasks.celery's); importing it builds none.
deliver_task = shared_task(name=TASK_NAME, bind=True, acks_late=True, max_retries=None)(deliver)
