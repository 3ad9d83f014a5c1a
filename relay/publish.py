"""Publishing claimed deliveries as Celery tasks on their channel's queue.

Each message is a standard Celery protocol-2 task, headers and body made by Celery's own
``amqp.as_task_v2``, in the envelope kombu's Redis transport stores (a JSON object with the body
in base64), pushed onto the list kombu reads for the queue and priority. So stock Celery
workers and Flower see ordinary tasks. The relay pushes a whole batch through one pipeline on
its own long-lived Redis client: ``send_task`` costs several times more CPU per task (a new
Redis client for every publish batch, a repr of the arguments, a queue declaration and a signal
round), all of it on every delivery's path (bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator, Sequence
from itertools import groupby

import orjson
import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename

from app.core.domain import Channel
from app.core.logs import log_context
from app.core.routing import TASK_NAME, priority_list
from app.store.outbox import ClaimedEvent

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


class TaskPublisher:
    """Builds and pushes the relay's task messages; one per relay process."""

    def __init__(self, celery: Celery, client: redis.Redis) -> None:
        self._celery = celery
        self._client = client
        self._origin = anon_nodename()  # as send_task names the publishing process

    def publish(self, events: Sequence[ClaimedEvent], chunk_size: int) -> int:
        """Publish every event; raises if Redis refuses, so the caller's claim rolls back."""
        published = 0
        pipeline = self._client.pipeline(transaction=False)
        # Logged once Redis took them: a publish that times out is not reported as done.
        sent: list[tuple[str, Channel, list[ClaimedEvent]]] = []
        for channel, priority, chunk in chunks(events, chunk_size):
            task_id = str(uuid.uuid4())
            message = self.message(task_id, [e.delivery_id for e in chunk], channel, priority)
            pipeline.lpush(priority_list(channel.queue, priority), message)
            published += 1
            sent.append((task_id, channel, chunk))
            if len(pipeline) >= PIPELINE_SIZE:
                _execute(pipeline, sent)
        if len(pipeline):
            _execute(pipeline, sent)
        return published

    def message(
        self, task_id: str, delivery_ids: list[str], channel: Channel, priority: int
    ) -> bytes:
        """The task message for ``delivery_ids``, as kombu stores it in Redis."""
        args = (delivery_ids,)
        # What Flower shows as the task's args. send_task's saferepr walks the list item by
        # item; repr, cut at the same length, shows the same ids for a fraction of the cost.
        amqp = self._celery.amqp
        argsrepr = repr(args)
        if len(argsrepr) > amqp.argsrepr_maxsize:
            argsrepr = argsrepr[: amqp.argsrepr_maxsize - 3] + "..."
        headers, properties, body, _ = amqp.as_task_v2(
            task_id,
            TASK_NAME,
            args=args,
            kwargs={},
            argsrepr=argsrepr,
            kwargsrepr="{}",
            origin=self._origin,
            reply_to=self._celery.thread_oid,
            ignore_result=None,  # as send_task leaves it: the worker applies task_ignore_result
        )
        return orjson.dumps(
            {
                "body": base64.b64encode(orjson.dumps(body)).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": {
                    **properties,
                    "delivery_mode": 2,  # persistent, as Celery sends every task
                    "delivery_info": {"exchange": "", "routing_key": channel.queue},
                    "priority": priority,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )


def _execute(
    pipeline: redis.client.Pipeline, sent: list[tuple[str, Channel, list[ClaimedEvent]]]
) -> None:
    pipeline.execute()
    for task_id, channel, chunk in sent:
        _log_published(task_id, channel, chunk)
    sent.clear()


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
