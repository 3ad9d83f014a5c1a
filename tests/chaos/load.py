"""A steady stream of notifications through a running API, for the chaos test, the failover
tests and the long chaos run (``python -m tests.chaos``): what was accepted, what was refused,
and when each request was refused or could not be answered."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

# The answers other than 2xx that a fault explains, by (status, error code): nothing was
# written, and the client retries with the same Idempotency-Key.
RETRIED_REFUSALS = frozenset({(503, "database_unavailable")})


@dataclass
class SteadyLoad:
    """Open-loop clients: request i is due at start + i/rate and is sent again with the same
    Idempotency-Key (the same body) while it gets no answer or one of ``retried`` refusals,
    until ``give_up_after`` seconds from the start. Any other answer is final."""

    port: int
    key: str
    body: Callable[[int], dict[str, Any] | bytes]  # a raw body is sent as it is
    rate: float
    seconds: float
    give_up_after: float = 60.0
    retried: Collection[tuple[int, str]] = RETRIED_REFUSALS
    clients: int = 4
    pause: float = 0.2  # between two tries of one request
    accepted: dict[int, str] = field(default_factory=dict)  # request index → notification id
    refused: Counter[tuple[int, str]] = field(default_factory=Counter)  # (status, error code)
    # The final refusal of each request that was not accepted: request index → (status, code).
    refusals: dict[int, tuple[int, str]] = field(default_factory=dict)
    # (time.time(), what) of each answer other than 2xx and each request that got no answer.
    failures: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0  # time.time() of request 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return int(self.seconds * self.rate)

    def run(self) -> None:
        self.started = time.time()
        start, cursor = time.monotonic(), iter(range(self.total))
        give_up = start + self.give_up_after

        def client() -> None:
            while True:
                with self.lock:
                    index = next(cursor, None)
                if index is None:
                    return
                time.sleep(max(0.0, start + index / self.rate - time.monotonic()))
                while time.monotonic() < give_up and not self._send(index):
                    time.sleep(self.pause)

        threads = [threading.Thread(target=client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _send(self, index: int) -> bool:
        """True once request ``index`` has its final answer."""
        body = self.body(index)
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"load-{index}",
        }
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            raw = body if isinstance(body, bytes) else json.dumps(body)
            conn.request("POST", "/api/v1/notifications", raw, headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            # The API is down, or was killed mid-answer (IncompleteRead): try again with the same
            # Idempotency-Key, which replays the notification if it had been committed.
            self._failed(f"no answer: {type(exc).__name__}")
            return False
        if 200 <= response.status < 300:
            with self.lock:
                self.accepted[index] = json.loads(payload)["id"]
                self.refusals.pop(index, None)
            return True
        refusal = (response.status, error_code(payload))
        self._failed(f"{response.status} {payload[:200]!r}")
        with self.lock:
            self.refused[refusal] += 1
            self.refusals[index] = refusal
        return refusal not in self.retried

    def _failed(self, what: str) -> None:
        with self.lock:
            self.failures.append((time.time(), what))


def error_code(payload: bytes) -> str:
    """The error document's code, or what the body was if it was not one."""
    try:
        return str(json.loads(payload)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"not an error document: {payload[:80]!r}"
