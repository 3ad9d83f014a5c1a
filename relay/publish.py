"""Publishing claimed deliveries as Celery tasks on their channel's queue."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from itertools import groupby

from celery import Celery

from app.domain import Channel
from app.logs import log_context
from relay.claim import ClaimedEvent
from tasks.deliver import TASK_NAME

log = logging.getLogger(__name__)

PIPELINE_SIZE = 500


def chunks(
    events: Sequence[ClaimedEvent], size: int
) -> Iterator[tuple[Channel, int, list[ClaimedEvent]]]:
    """(channel, priority, events) groups of at most ``size``, HIGH priority first."""
    ordered = sorted(events, key=lambda e: (e.priority, e.channel))
    for (channel, priority), group in groupby(ordered, key=lambda e: (e.channel, e.priority)):
        members = list(group)
        for start in range(0, len(members), size):
            yield Channel(channel), priority, members[start : start + size]


def publish(celery: Celery, events: Sequence[ClaimedEvent], chunk_size: int) -> int:
    """Publish every event; raises if the broker refuses, so the caller's claim rolls back.

    The messages are ordinary Celery protocol-2 tasks; ``Producer.batch`` only sends their
    LPUSHes to Redis in pipelines instead of one round trip each.
    """
    published = 0
    with celery.producer_or_acquire() as producer, producer.batch(max_size=PIPELINE_SIZE):
        for channel, priority, chunk in chunks(events, chunk_size):
            result = celery.send_task(
                TASK_NAME,
                args=([e.delivery_id for e in chunk],),
                queue=channel.queue,
                routing_key=channel.queue,
                priority=priority,
                producer=producer,
            )
            published += 1
            _log_published(result.id, channel, chunk)
    return published


def _log_published(task_id: str, channel: Channel, chunk: list[ClaimedEvent]) -> None:
    one = chunk[0] if len(chunk) == 1 else None
    with log_context(
        request_id=one and one.request_id,
        notification_id=one and one.notification_id,
        delivery_id=one and one.delivery_id,
    ):
        log.info(
            "published %d %s deliveries as task %s",
            len(chunk),
            channel.value,
            task_id,
            extra={} if one else {"delivery_ids": [e.delivery_id for e in chunk]},
        )
