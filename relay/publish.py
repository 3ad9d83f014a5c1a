"""Publishing claimed deliveries as Celery tasks on their channel's queue."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby

from celery import Celery

from app.domain import Channel
from relay.claim import ClaimedEvent
from tasks.deliver import TASK_NAME


def chunks(events: Sequence[ClaimedEvent], size: int) -> Iterator[tuple[Channel, int, list[str]]]:
    """(channel, priority, delivery ids) groups of at most ``size``, HIGH priority first."""
    ordered = sorted(events, key=lambda e: (e.priority, e.channel))
    for (channel, priority), group in groupby(ordered, key=lambda e: (e.channel, e.priority)):
        ids = [str(e.delivery_id) for e in group]
        for start in range(0, len(ids), size):
            yield Channel(channel), priority, ids[start : start + size]


def publish(celery: Celery, events: Sequence[ClaimedEvent], chunk_size: int) -> int:
    """Publish every event; raises if the broker refuses, so the caller's claim rolls back."""
    published = 0
    with celery.producer_or_acquire() as producer:
        for channel, priority, ids in chunks(events, chunk_size):
            celery.send_task(
                TASK_NAME,
                args=(ids,),
                queue=channel.queue,
                routing_key=channel.queue,
                priority=priority,
                producer=producer,
            )
            published += 1
    return published
