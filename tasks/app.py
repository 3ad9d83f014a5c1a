"""The Celery application: one queue per channel, priorities on Redis, late acknowledgement.

``make_celery`` only configures; the process that runs workers builds its app in
``tasks.celery`` (what ``celery -A tasks`` loads), and the relay builds one to encode messages.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from app.core.domain import Channel, Priority
from app.core.redis_clients import broker_transport_options, broker_url
from app.core.routing import PRIORITY_SEP, PRIORITY_STEPS
from app.core.settings import Settings

SETTINGS_KEY = "notification_settings"
BROKER_CONNECT_TIMEOUT_SECONDS = 2.0
BROKER_SOCKET_TIMEOUT_SECONDS = 5.0


def make_celery(settings: Settings) -> Celery:
    celery = Celery("notifications", broker=broker_url(settings), include=["tasks.deliver"])
    celery.conf.update(
        # The one Settings of the process, for the task to build its context from.
        **{SETTINGS_KEY: settings},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(channel.queue) for channel in Channel],  # type: ignore[no-untyped-call]
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
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEP,
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            # A hung Redis fails a worker's broker call instead of blocking it: kombu's own
            # BRPOP waits a second at a time, well inside the read deadline.
            "socket_connect_timeout": BROKER_CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
            "socket_keepalive": True,
            # With REDIS_SENTINELS: which master to ask the Sentinels for.
            **broker_transport_options(settings, timeout=5.0),
        },
        broker_connection_timeout=BROKER_CONNECT_TIMEOUT_SECONDS,
        broker_connection_retry_on_startup=True,
        # Task events only while someone watches: Flower switches them on in every worker
        # (enable_events, repeated every 5 s) and a worker then reports each task. Sent always,
        # they cost a fan-out PUBLISH and a new Redis client per event, three events per task
        # (bench/RESULTS.md). The relay never sends "task-sent".
        worker_send_task_events=False,
    )
    return celery


def app_settings(celery: Celery) -> Settings:
    """The Settings ``celery`` was made with."""
    settings = celery.conf[SETTINGS_KEY]
    assert isinstance(settings, Settings)
    return settings
