"""IN_APP: store the item in the user's inbox, then publish it to the user's open sockets.

A delivery is sent once its item is stored: the inbox is the record, and a user who is offline
reads it there (or is sent it when a socket connects). The provider message id is
``inbox:<item id>:live:<n>``, where n is how many API processes held a socket of the user when
the item was published (PUBLISH's receiver count; ``unpublished`` if Redis was unreachable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Self

from sqlalchemy.exc import SQLAlchemyError

from app.core import inbox_events
from app.core.db import transaction
from app.core.process import ProcessContext
from app.store import inbox
from tasks.channels.base import Message, Outcome, Permanent, Retryable, Sent, send_each

log = logging.getLogger(__name__)


class InAppProvider:
    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls(process)

    def __init__(self, process: ProcessContext) -> None:
        self._engine = process.engine
        self._redis = process.redis

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: Message) -> Outcome:
        if not message.user_id:
            return Permanent("no_user", "IN_APP needs a userId")
        try:
            with transaction(self._engine) as conn:
                item, unread = inbox.store(
                    conn,
                    project_id=message.project_id,
                    user_id=message.user_id,
                    delivery_id=message.delivery_id,
                    notification_id=message.notification_id,
                    category=message.type.value,
                    title=message.subject,
                    body=message.body,
                    data=message.data,
                )
        except SQLAlchemyError as exc:
            return Retryable("inbox_store", f"inbox not written: {exc!r}"[:500])
        event = inbox_events.item_event(item, unread)
        owner = inbox_events.inbox_of(message.project_id, message.user_id)
        receivers = inbox_events.publish(self._redis, owner, event)
        live = "unpublished" if receivers is None else str(receivers)
        return Sent(provider_message_id=f"inbox:{item['id']}:live:{live}")
