"""The ``log`` provider: writes each delivery to the worker log instead of sending it.

The default for a developer machine, so deliveries are visible without any credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Self

from app.core.process import ProcessContext
from tasks.channels.base import Message, Outcome, Sent, send_each

log = logging.getLogger("notifications.delivered")


class LogProvider:
    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls()

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        return send_each(messages, self._send_one)

    def _send_one(self, message: Message) -> Outcome:
        log.info(
            "delivered %s notification %s (delivery %s, attempt %d)",
            message.channel.value,
            message.notification_id,
            message.delivery_id,
            message.attempt,
        )
        return Sent(provider_message_id=f"log-{message.delivery_id}")


class NoopProvider:
    """Accepts every message and does nothing: the delivery side of the benchmarks, so they
    measure the pipeline rather than a provider."""

    @classmethod
    def create(cls, process: ProcessContext) -> Self:
        return cls()

    def send(self, messages: Sequence[Message]) -> Iterator[Outcome]:
        return send_each(messages, lambda _: Sent())
