"""The long chaos run's plan (``python -m tests.chaos``): one seed decides every fault's moment
and every request's content, every chosen fault happens, and worker kills stay far enough
apart for each duplicate to be put down to the right kill."""

from __future__ import annotations

import json
import random
from itertools import pairwise

from tests.chaos.plan import FAULTS, KILL_SPACING_SECONDS, REQUEST_FAULTS, Plan


def plan(seed: int, minutes: float = 10, faults: tuple[str, ...] = FAULTS) -> Plan:
    return Plan(minutes * 60, 100, faults, random.Random(seed)).draw()


def test_one_seed_replays_the_same_plan_and_another_seed_draws_another() -> None:
    first, again, other = plan(1), plan(1), plan(2)

    assert (first.moments, first.mixes, first.carried) == (
        again.moments,
        again.mixes,
        again.carried,
    )
    assert [b for b in map(lambda i: first.body("http://r", i), range(200))] == [
        again.body("http://r", i) for i in range(200)
    ]
    assert first.moments != other.moments
    assert first.mixes != other.mixes


def test_every_chosen_fault_happens_within_the_load_and_no_other() -> None:
    for minutes in (1, 2, 10):
        drawn = plan(7, minutes)
        happening = {fault for _, fault in drawn.moments}
        assert happening == set(FAULTS), minutes
        assert all(0 < moment < minutes * 60 for moment, _ in drawn.moments)
    only = plan(7, 2, ("stall-postgres", "poison-request"))
    assert {fault for _, fault in only.moments} == {"stall-postgres", "poison-request"}
    assert set(only.carried.values()) == {"poison-request"}


def test_worker_kills_are_spaced_so_each_duplicate_has_one_kill_to_blame() -> None:
    for seed in range(20):
        kills = [m for m, fault in plan(seed).moments if fault == "kill-worker"]
        assert len(kills) == 5
        assert all(b - a >= KILL_SPACING_SECONDS for a, b in pairwise(kills)), kills


def test_requests_carry_their_fault_in_what_they_send() -> None:
    drawn = plan(3)
    carried = {
        fault: [i for i, f in drawn.carried.items() if f == fault] for fault in REQUEST_FAULTS
    }
    assert {fault: len(ids) for fault, ids in carried.items()} == {
        fault: 5 * count for fault, count in REQUEST_FAULTS.items()
    }
    for index in carried["poison-request"]:
        assert "\\u0000" in json.dumps(drawn.body("http://r", index))
    for fault in ("slow-provider", "nul-errors", "poison-message"):
        for index in carried[fault]:
            body = drawn.body("http://r", index)
            assert "WEBHOOK" in body["channels"]
            assert body["webhookUrl"] == f"http://r/{fault}/{index}"
    plain = next(i for i in range(1000) if i not in drawn.carried)
    assert "\\u0000" not in json.dumps(drawn.body("http://r", plain))
