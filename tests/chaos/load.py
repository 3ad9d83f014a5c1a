"""A steady stream of notifications through a running API, for the failover tests: what was
accepted, and when each request was refused or could not be answered."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SteadyLoad:
    """Open-loop clients: request i is due at start + i/rate and is retried with the same
    Idempotency-Key until the API answers 2xx or ``give_up_after`` seconds have passed."""

    port: int
    key: str
    body: Callable[[int], dict[str, Any]]
    rate: float
    seconds: float
    give_up_after: float = 60.0
    accepted: dict[int, str] = field(default_factory=dict)  # request index → notification id
    # (time.time(), what) of each answer other than 2xx and each request that got no answer.
    failures: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0  # time.time() of request 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, clients: int = 4) -> None:
        self.started = time.time()
        start, cursor = time.monotonic(), iter(range(int(self.seconds * self.rate)))
        give_up = start + self.give_up_after

        def client() -> None:
            while True:
                with self.lock:
                    index = next(cursor, None)
                if index is None:
                    return
                time.sleep(max(0.0, start + index / self.rate - time.monotonic()))
                while time.monotonic() < give_up and not self._send(index):
                    time.sleep(0.2)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _send(self, index: int) -> bool:
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"load-{index}",
        }
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("POST", "/api/v1/notifications", json.dumps(self.body(index)), headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            self._failed(f"no answer: {type(exc).__name__}")
            return False
        if 200 <= response.status < 300:
            with self.lock:
                self.accepted[index] = json.loads(payload)["id"]
            return True
        self._failed(f"{response.status} {payload[:200]!r}")
        return False

    def _failed(self, what: str) -> None:
        with self.lock:
            self.failures.append((time.time(), what))
