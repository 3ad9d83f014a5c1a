"""What the seed of a long chaos run (``python -m tests.chaos``) decides, before the run starts:
when each fault happens, the channels of each request, and which requests carry a fault."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tests.standins.webhook import Reply, WebhookReceiver

# Long enough that a PostgreSQL stall (and the deadlines of the statements it freezes) does not
# outlast it: a lease the renewer could not renew in time would re-drive a live send.
LEASE_SECONDS = 15
SLOW_SECONDS = LEASE_SECONDS + 2  # the slow provider answers one call this late
# Worker kills are at least this far apart, so each duplicate is put down to the right kill
# (a call stays in flight at most the webhook read timeout).
KILL_SPACING_SECONDS = SLOW_SECONDS + 5

# Faults of the processes and the engines, each at its moments.
PROCESS_FAULTS = (
    "kill-worker",
    "kill-relay",
    "kill-api",
    "kill-api-worker",
    "flush-redis",
    "restart-postgres",
    "stall-redis",
    "stall-postgres",
)
# Faults carried by the load: the requests due from the fault's moment on carry it.
REQUEST_FAULTS = {
    "slow-provider": 2,  # a webhook receiver slower than the sweeper lease
    "nul-errors": 5,  # a webhook receiver answering 500 with NUL and invalid UTF-8 in its text
    "poison-message": 5,  # a webhook answer the client cannot decode (the provider raises)
    "poison-request": 5,  # a value PostgreSQL refuses to store: refused alone, 422
}
FAULTS = (*PROCESS_FAULTS, *REQUEST_FAULTS)
CHANNEL_MIXES = (
    ("EMAIL",),
    ("WEBHOOK",),
    ("SMS",),
    ("EMAIL", "WEBHOOK"),
    ("EMAIL", "SMS"),
    ("EMAIL", "WEBHOOK", "SMS"),
)


@dataclass
class Plan:
    """Everything the seed decides, drawn before the run starts: when each fault happens, the
    channels of each request and which requests carry a fault."""

    seconds: float
    rate: float
    faults: tuple[str, ...]
    rng: random.Random
    moments: list[tuple[float, str]] = field(default_factory=list)
    mixes: list[tuple[str, ...]] = field(default_factory=list)
    carried: dict[int, str] = field(default_factory=dict)  # request index → its fault

    def draw(self) -> Plan:
        total = int(self.seconds * self.rate)
        self.mixes = [self.rng.choice(CHANNEL_MIXES) for _ in range(total)]
        each = max(1, round(self.seconds / 120))  # one of each fault per two minutes
        for fault in self.faults:
            for moment in self._moments(fault, each):
                self.moments.append((moment, fault))
                if fault in REQUEST_FAULTS:
                    first = int(moment * self.rate)
                    for index in range(first, min(total, first + REQUEST_FAULTS[fault])):
                        self.carried[index] = fault
        self.moments.sort()
        return self

    def _moments(self, fault: str, count: int) -> list[float]:
        low, high = 5.0, max(6.0, self.seconds - 10)
        if fault != "kill-worker":
            return [self.rng.uniform(low, high) for _ in range(count)]
        # As many kills as fit KILL_SPACING_SECONDS apart, evenly spread with some jitter.
        count = max(1, min(count, int((high - low) // KILL_SPACING_SECONDS)))
        slot = (high - low) / count
        jitter = max(0.0, slot - KILL_SPACING_SECONDS)
        return [low + i * slot + self.rng.uniform(0, jitter) for i in range(count)]

    def body(self, receiver_url: str, index: int) -> dict[str, Any]:
        channels = self.mixes[index]
        fault = self.carried.get(index)
        hook = "plain"
        if fault in ("slow-provider", "nul-errors", "poison-message"):
            channels = tuple(sorted({*channels, "WEBHOOK"}))
            hook = fault
        body: dict[str, Any] = {
            "type": "TRANSACTIONAL",
            "subject": f"chaos {index}",
            "body": "steady load",
            "channels": list(channels),
            "data": {"index": index},
        }
        if "EMAIL" in channels:
            body["recipientEmail"] = f"chaos{index}@example.com"
        if "WEBHOOK" in channels:
            body["webhookUrl"] = f"{receiver_url}/{hook}/{index}"
        if "SMS" in channels:
            body["recipientPhone"] = f"+1555{index:08d}"
        if fault == "poison-request":
            # PostgreSQL cannot store a NUL in text or jsonb: in the body, a data value, a key.
            body.update(
                (
                    {"body": "a NUL \u0000 in the body"},
                    {"data": {"index": index, "note": "a NUL \u0000 in data"}},
                    {"data": {"index": index, "a NUL \u0000 in a key": 1}},
                )[index % 3]
            )
        return body

    def plan_receiver(self, receiver: WebhookReceiver) -> None:
        """The receiver's answers to the requests that carry a webhook fault."""
        for index, fault in self.carried.items():
            path = f"/{fault}/{index}"
            if fault == "slow-provider":
                receiver.plan(path, Reply(200, delay=SLOW_SECONDS))
            elif fault == "nul-errors":
                receiver.plan(path, Reply(500, body=b"broken\x00reply \xff\xfe from the receiver"))
            elif fault == "poison-message":
                receiver.plan(
                    path, Reply(200, body=b"not gzip", headers=(("Content-Encoding", "gzip"),))
                )
