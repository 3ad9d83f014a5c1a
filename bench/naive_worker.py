"""A stock Celery app with a no-op task: what a plain Celery worker drains per second."""

from __future__ import annotations

from celery import Celery

from bench.harness import REDIS_URL

app = Celery("naive", broker=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="naive",
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop(i: int) -> None:
    return None
