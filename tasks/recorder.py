"""One recorder per worker process: the outcomes of all its tasks, group-committed.

A task hands each outcome over as soon as its provider answered and waits until it is durable
before sending its next message, so a worker killed at any instant can re-send at most one
message per task (the one in flight or the one being recorded): the duplicate bound is the
worker's concurrency. What the tasks answered meanwhile is written by the next statement, one
round trip for all of them, which is what keeps throughput when providers answer quickly."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from app.core.db import retried_transaction
from app.store import deliveries
from app.store.deliveries import DeliveryResult

log = logging.getLogger(__name__)

# One statement's worth: enough to take every task's outcome of a busy process at once, small
# enough that one statement stays short.
MAX_BATCH = 500


class Recorder:
    """Records outcomes handed over by any thread of this process, many per statement."""

    def __init__(self, engine: Engine, patience_seconds: float) -> None:
        self._engine = engine
        # A database that is briefly away (a restart, a failover) is waited for this long: the
        # provider has answered, and an outcome given up on is a message sent again.
        self._patience = patience_seconds
        self._waiting: list[tuple[DeliveryResult, Future[str | None]]] = []
        self._arrived = threading.Condition()
        self._writer: threading.Thread | None = None

    def record(self, result: DeliveryResult) -> str | None:
        """Blocks until ``result`` is durable; returns the status applied (None when its task no
        longer holds the delivery). Raises the database's error once patience ran out."""
        done: Future[str | None] = Future()
        with self._arrived:
            self._waiting.append((result, done))
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="recorder", daemon=True)
                self._writer.start()
            self._arrived.notify()
        return done.result()

    def _write(self) -> None:
        while True:
            with self._arrived:
                while not self._waiting:
                    self._arrived.wait()
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
            try:
                applied = self._write_batch([result for result, _ in batch])
            except BaseException as exc:  # every waiting task must hear of it, whatever it is
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for result, done in batch:
                done.set_result(applied.get(result.delivery_id))

    def _write_batch(self, results: list[DeliveryResult]) -> dict[uuid.UUID, str]:
        deadline = time.monotonic() + self._patience
        pause = 0.1
        while True:
            try:
                return retried_transaction(
                    self._engine, lambda conn: deliveries.record_outcomes(conn, results)
                )
            except (OperationalError, InterfaceError):
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("recording %d outcomes failed; trying again", len(results))
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
