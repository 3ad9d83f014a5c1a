"""The provider contract runner: what a provider must make of each answer its service gives.

A provider's table (tests/test_provider_contract.py) lists answers of its stand-in, in the
stand-in's own plan vocabulary, and the outcome the provider must return for each: its class, its
code and the Retry-After it carries. The runner sends each row's message through the provider as a
worker would and compares, then sends every row's message in one batch: one outcome per message,
in order (tasks/channels/base.py). As apprise runs every plugin's table through one tester, every
provider runs through this one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from app.api.keys import DEFAULT_PROJECT
from app.core.domain import Channel, NotificationType, Priority
from app.core.process import ProcessContext
from app.core.settings import Settings
from tasks.channels import PROVIDERS, provider_name, resolve
from tasks.channels.base import Message, Outcome, Provider, Sent


class _Unreachable:
    def __repr__(self) -> str:
        return "unreachable"


# The answer when nothing listens where the provider sends (a port no server holds).
UNREACHABLE: Any = _Unreachable()


@dataclass(frozen=True)
class Row:
    """One answer of the service and the outcome the provider must make of it."""

    answer: Any
    outcome: type[Outcome]
    code: str | None = None
    retry_after: float | None = None

    def expected(self) -> tuple[str, str | None, float | None]:
        return self.outcome.__name__, self.code, self.retry_after


def observed(outcome: Outcome) -> tuple[str, str | None, float | None]:
    """An outcome as a row states it: class, code, Retry-After."""
    if isinstance(outcome, Sent):
        return "Sent", None, None
    return type(outcome).__name__, outcome.code, getattr(outcome, "retry_after", None)


class Subject(Protocol):
    """A provider wired to its stand-in."""

    def unreachable(self) -> None:
        """From now on, send where nothing listens (for a row whose answer is UNREACHABLE)."""

    def running(self) -> AbstractContextManager[object]:
        """The provider built as a worker builds it, closed again afterwards."""

    def message(self, answer: Any) -> Message:
        """A new message whose sending the stand-in answers with ``answer`` (planned now)."""

    def send(self, messages: Sequence[Message]) -> list[Outcome]: ...

    def secrets(self, message: Message) -> list[str]:
        """What no outcome's reason may contain (a phone number, a device token)."""


def check_row(subject: Subject, row: Row) -> None:
    if row.answer is UNREACHABLE:
        subject.unreachable()
    with subject.running():
        message = subject.message(row.answer)

        outcomes = subject.send([message])

    assert [observed(o) for o in outcomes] == [row.expected()]
    reason = getattr(outcomes[0], "reason", "")
    assert [s for s in subject.secrets(message) if s in reason] == [], reason


def check_batch(subject: Subject, rows: Sequence[Row]) -> None:
    """Every row the stand-in answers (UNREACHABLE is the provider's state, not a message's)."""
    rows = [row for row in rows if row.answer is not UNREACHABLE]
    with subject.running():
        messages = [subject.message(row.answer) for row in rows]

        outcomes = subject.send(messages)

    assert [observed(o) for o in outcomes] == [row.expected() for row in rows]


def message(channel: Channel, *, attempt: int = 1, **fields: Any) -> Message:
    """An attempt (the first unless ``attempt``) of a new delivery on ``channel`` of the tests'
    project; ``fields`` address it."""
    return Message(
        delivery_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        project_id=DEFAULT_PROJECT,
        channel=channel,
        attempt=attempt,
        type=NotificationType.TRANSACTIONAL,
        priority=Priority.NORMAL,
        created_at=datetime.now(UTC),
        subject="Your order shipped",
        body="It is on its way.",
        **fields,
    )


@contextmanager
def worker_provider(settings: Settings, channel: Channel) -> Iterator[Provider]:
    """The channel's provider as a worker builds it: named by its setting, through ``create``."""
    process = ProcessContext.connect(settings, pool_size=2)
    try:
        yield resolve(PROVIDERS[channel][provider_name(process, channel)]).create(process)
    finally:
        process.close()
