"""The delivery task: claim → send through the channel's provider → record, retry per item."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from celery import Task, shared_task

from app.core import metrics
from app.core.db import retried_transaction
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

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WorkerContext(ProcessContext):
    """What a worker process holds: built on first use, again in each forked child. Its
    ``statements`` engine claims and records (each one guarded statement); its ``engine`` serves
    the providers that keep channel state in the database (PUSH devices, the inbox)."""

    providers: dict[Channel, Provider]

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        pool_size = max(2, settings.worker_concurrency)
        process = ProcessContext.connect(
            settings, pool_size=pool_size, pre_ping=True, statements_pool_size=pool_size
        )
        return cls.extend(process, providers=build_providers(process))


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


def send_all(context: WorkerContext, messages: Sequence[Message]) -> list[DeliveryResult]:
    results: list[DeliveryResult] = []
    by_channel = groupby(sorted(messages, key=lambda m: m.channel), key=lambda m: m.channel)
    for channel, group in by_channel:
        batch = list(group)
        provider = context.providers.get(channel)
        started = time.perf_counter()
        if provider is None:
            outcomes: list[Outcome] = [
                Retryable("no_provider", f"no {channel.value} provider configured")
            ] * len(batch)
        else:
            try:
                outcomes = provider.send(batch)
            except Exception as exc:
                log.exception("provider for %s raised", channel.value)
                outcomes = [Retryable("provider_error", repr(exc)[:500])] * len(batch)
        metrics.PROVIDER_CALL_DURATION.labels(channel.value).observe(time.perf_counter() - started)
        results.extend(judge(context.settings, m, o) for m, o in zip(batch, outcomes, strict=True))
    return results


def deliver_ids(context: WorkerContext, delivery_ids: Sequence[str]) -> list[DeliveryResult]:
    """Deliver what this task can claim; returns the results that must be retried later."""
    lease = context.settings.sweeper_lease_seconds
    claimed = retried_transaction(
        context.statements,
        lambda conn: deliveries.claim_for_sending(conn, delivery_ids, lease),
    )
    rows = {row.id: row for row in claimed}
    for row in claimed:
        if row.status == DeliveryStatus.EXPIRED:
            _observe(row, DeliveryStatus.EXPIRED.value, row.error_code)
    messages = [Message.from_row(row) for row in claimed if row.status == DeliveryStatus.SENDING]
    if not messages:
        return []
    results = send_all(context, messages)
    applied = retried_transaction(
        context.statements, lambda conn: deliveries.record_outcomes(conn, results)
    )
    for result in results:
        status = applied.get(result.delivery_id, "not recorded (no longer SENDING)")
        _observe(rows[result.delivery_id], status, result.error_code)
    return [r for r in results if applied.get(r.delivery_id) == DeliveryStatus.RETRYING.value]


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
