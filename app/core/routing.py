"""Where a delivery travels between the relay and the workers: the task's name and the Redis
lists of each channel's queue. The relay publishes by these names without importing a task."""

from __future__ import annotations

from app.core.domain import Priority

TASK_NAME = "notifications.deliver"
PRIORITY_SEP = ":"
PRIORITY_STEPS = sorted(p.rank for p in Priority)


def priority_list(queue: str, rank: int) -> str:
    """The Redis list holding a queue's messages of one priority, named as kombu names it."""
    return queue if rank == 0 else f"{queue}{PRIORITY_SEP}{rank}"


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold one Celery queue: one per priority (email, email:1, email:2)."""
    return [priority_list(queue, rank) for rank in PRIORITY_STEPS]
