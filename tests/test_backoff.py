"""Retry timing: exponential, jittered, capped, and never sooner than the provider asked."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from app.core.domain import Channel, DeliveryStatus
from app.core.settings import Settings
from tasks.channels.base import InvalidRecipient, Message, Permanent, Retryable, Sent
from tasks.deliver import backoff_seconds, judge
from tests.helpers import contract

SETTINGS = Settings(
    retry_backoff_base_seconds=2.0, retry_backoff_max_seconds=60.0, delivery_max_attempts=5
)


def message(attempt: int) -> Message:
    return contract.message(Channel.EMAIL, attempt=attempt)


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 1, 2), (2, 2, 4), (3, 4, 8), (9, 30, 60)])
def test_backoff_doubles_per_attempt_within_jitter_and_cap(
    attempt: int, low: float, high: float
) -> None:
    random.seed(7)
    delays = [backoff_seconds(SETTINGS, attempt, None) for _ in range(200)]

    assert low <= min(delays) and max(delays) <= high
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not a fixed schedule


class _Pinned(random.Random):
    """Randomness pinned to one draw: every float it makes comes from ``random()``."""

    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (9, 60.0)])
def test_backoff_is_equal_jitter_from_half_the_ceiling_to_the_ceiling(
    monkeypatch: pytest.MonkeyPatch, attempt: int, ceiling: float
) -> None:
    delays = {}
    for draw in (0.0, 0.5, 1 - 2**-53):  # the lowest draw, the middle one, the highest
        monkeypatch.setattr("tasks.deliver.random", _Pinned(draw))
        delays[draw] = backoff_seconds(SETTINGS, attempt, None)

    assert delays[0.0] == ceiling / 2
    assert delays[0.5] == ceiling * 3 / 4
    assert delays[1 - 2**-53] == pytest.approx(ceiling)


def test_retry_after_is_honoured_but_capped() -> None:
    assert backoff_seconds(SETTINGS, 1, retry_after=30) == 30
    assert backoff_seconds(SETTINGS, 1, retry_after=3600) == SETTINGS.retry_backoff_max_seconds


def test_retryable_failure_retries_until_the_last_attempt_then_fails() -> None:
    outcome = Retryable("smtp_4xx", "451 try later")

    early = judge(SETTINGS, message(attempt=4), outcome)
    last = judge(SETTINGS, message(attempt=5), outcome)

    assert early.status is DeliveryStatus.RETRYING and early.retry_in_seconds
    assert last.status is DeliveryStatus.FAILED
    assert last.error == "451 try later (gave up after 5 attempts)"


def test_permanent_and_invalid_recipient_fail_at_once_and_sent_records_the_provider_id() -> None:
    assert judge(SETTINGS, message(1), Permanent("smtp_5xx", "554")).status is DeliveryStatus.FAILED
    assert judge(SETTINGS, message(1), InvalidRecipient("smtp_5xx", "550")).status is (
        DeliveryStatus.FAILED
    )
    sent = judge(SETTINGS, message(1), Sent("<id@x>"))
    assert (sent.status, sent.provider_message_id) == (DeliveryStatus.SENT, "<id@x>")


def test_settings_refuse_a_backoff_cap_near_the_visibility_timeout() -> None:
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        replace(SETTINGS, retry_backoff_max_seconds=3000.0)
