"""The Celery application: one queue per channel, priorities on Redis, late acknowledgement."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu import Queue

from app.domain import Channel, Priority
from app.logs import configure_logging
from app.settings import Settings

PRIORITY_SEP = ":"


def priority_list(queue: str, rank: int) -> str:
    """The Redis list holding a queue's messages of one priority, named as kombu names it."""
    return queue if rank == 0 else f"{queue}{PRIORITY_SEP}{rank}"


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold one Celery queue: one per priority (email, email:1, email:2)."""
    return [priority_list(queue, rank) for rank in _PRIORITY_STEPS]


_PRIORITY_STEPS = sorted(p.rank for p in Priority)


def make_celery(settings: Settings) -> Celery:
    celery = Celery("notifications", broker=settings.redis_url, include=["tasks.deliver"])
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(channel.queue) for channel in Channel],
        task_default_queue=Channel.EMAIL.queue,
        # A message is acknowledged only after its task finished, and requeued if the worker
        # process died under it; the delivery's guarded claim makes the rerun harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # On Redis each priority is its own list (email, email:1, email:2) and 0 is served first.
        # The default priority is NORMAL's, so un-prioritised messages do not jump HIGH ones.
        task_default_priority=Priority.NORMAL.rank,
        broker_transport_options={
            "priority_steps": _PRIORITY_STEPS,
            "sep": PRIORITY_SEP,
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
        },
        broker_connection_retry_on_startup=True,
        # Task events only while someone watches: Flower switches them on in every worker
        # (enable_events, repeated every 5 s) and a worker then reports each task. Sent always,
        # they were a quarter of a worker's CPU (a fan-out PUBLISH and a new Redis client per
        # event, three events per task: bench/RESULTS.md). The relay never sends "task-sent".
        worker_send_task_events=False,
    )
    return celery


settings = Settings.from_env()
app = make_celery(settings)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Workers log like every other process, whether started by notification-service or celery."""
    configure_logging(settings)
