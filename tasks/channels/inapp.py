"""IN_APP: store the item in the user's inbox, then publish it to the user's open sockets.

A delivery is sent once its item is stored: the inbox is the record, and a user who is offline
reads it there (or is sent it when a socket connects). The provider message id is
``inbox:<item id>:live:<n>``, where n is how many API processes held a socket of the user when
the item was published (PUBLISH's receiver count; ``unpublished`` if Redis was unreachable).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import fanout, inbox
from app.db import make_engine, transaction
from app.settings import Settings
from tasks.channels.base import Message, Outcome, Permanent, Retryable, Sent

log = logging.getLogger(__name__)


class InAppProvider:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Engine | None = None
        self._redis: redis.Redis | None = None

    def _connections(self) -> tuple[Engine, redis.Redis]:
        # Built on first use, in the worker process that sends (never in the API, which only
        # asks which channels have a provider).
        if self._engine is None or self._redis is None:
            self._engine = make_engine(self._settings, pool_size=2)
            self._redis = redis.Redis.from_url(
                self._settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            )
        return self._engine, self._redis

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        engine, client = self._connections()
        outcomes: list[Outcome] = []
        for message in messages:
            if not message.user_id:
                outcomes.append(Permanent("no_user", "IN_APP needs a userId"))
                continue
            try:
                with transaction(engine) as conn:
                    item, unread = inbox.store(conn, message)
            except SQLAlchemyError as exc:
                outcomes.append(Retryable("inbox_store", f"inbox not written: {exc!r}"[:500]))
                continue
            receivers = fanout.publish(client, message.user_id, fanout.item_event(item, unread))
            live = "unpublished" if receivers is None else str(receivers)
            outcomes.append(Sent(provider_message_id=f"inbox:{item['id']}:live:{live}"))
        return outcomes
