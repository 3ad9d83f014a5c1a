"""Group commit: the accepts of one API process's requests, written together.

Each request hands its notification to the process's one writer and waits (requests and the
writer are greenlets under the API's gevent worker, threads elsewhere, as in the tests). The
writer takes everything waiting (up to ``MAX_BATCH``), writes it with one statement on an
autocommit connection, and answers each waiting request only after that statement committed, so
accepted still means committed. Under light load a batch is a single notification and costs one
hand-off; under load batches grow while the previous one commits, and PostgreSQL logs and
flushes one transaction for many notifications. The batch travels as one JSON parameter of a
statement prepared once per connection: no per-request planning, no per-column array
adaptation (bench/RESULTS.md has the measurements).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg2
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

log = logging.getLogger(__name__)

MAX_BATCH = 200

# The notifications, one delivery per channel and one outbox event per delivery, for a whole
# batch given as a JSON array of NewNotification. A notification whose (api key,
# Idempotency-Key) is already taken is skipped with its deliveries, and is missing from the
# result: its request is then answered as a replay.
_PREPARE = """
    PREPARE accept_batch(json) AS
    WITH v AS (
        SELECT * FROM json_to_recordset($1) AS v(
            id uuid, api_key_id uuid, idempotency_key text, request_hash bytea,
            request_id text, type text, priority text, priority_rank smallint,
            recipient_email text, recipient_phone text, user_id text, device_tokens jsonb,
            webhook_url text, subject text, body text, html_body text, data jsonb,
            send_at timestamptz, expires_at timestamptz, deliveries json)
    ), n AS (
        INSERT INTO notification (id, api_key_id, idempotency_key, request_hash, request_id, type,
                                  priority, recipient_email, recipient_phone, user_id,
                                  device_tokens, webhook_url, subject, body, html_body, data,
                                  send_at, expires_at)
        SELECT id, api_key_id, idempotency_key, request_hash, request_id, type, priority,
               recipient_email, recipient_phone, user_id, device_tokens, webhook_url, subject,
               body, html_body, data, send_at, expires_at
        FROM v
        ON CONFLICT (api_key_id, idempotency_key) DO NOTHING
        RETURNING id
    ), d AS (
        INSERT INTO delivery (id, notification_id, channel)
        SELECT c.id, v.id, c.channel
        FROM v JOIN n ON n.id = v.id
        CROSS JOIN LATERAL json_to_recordset(v.deliveries) AS c(id uuid, channel text)
        RETURNING id, notification_id, channel
    ), o AS (
        INSERT INTO outbox_event (delivery_id, channel, priority, available_at, notification_id,
                                  request_id)
        SELECT d.id, d.channel, v.priority_rank, COALESCE(v.send_at, now()), v.id, v.request_id
        FROM d JOIN v ON v.id = d.notification_id
    )
    SELECT CAST(n.id AS text), now() AS created_at FROM n
"""
_EXECUTE = "EXECUTE accept_batch(%s)"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: uuid.UUID
    channel: str


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One accepted request, as its rows will be written (field names are the columns)."""

    id: uuid.UUID
    api_key_id: uuid.UUID
    idempotency_key: str | None
    request_hash: bytes | None  # only with an idempotency key: it tells a replay from a reuse
    request_id: str | None
    type: str
    priority: str
    priority_rank: int
    recipient_email: str | None
    recipient_phone: str | None
    user_id: str | None
    device_tokens: list[str] | None
    webhook_url: str | None
    subject: str | None
    body: str
    html_body: str | None
    data: dict[str, Any] | None
    send_at: datetime | None
    expires_at: datetime | None
    deliveries: tuple[NewDelivery, ...]


def _bytea(value: object) -> str:
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(type(value).__name__)


def write_batch(connection: Any, batch: list[NewNotification]) -> dict[uuid.UUID, datetime]:
    """Write ``batch`` with one statement on ``connection`` (a psycopg2 connection in autocommit
    mode, on which ``prepare(connection)`` ran). Returns the creation time of every notification
    written; one whose Idempotency-Key was already taken is absent."""
    with connection.cursor() as cursor:
        cursor.execute(_EXECUTE, (orjson.dumps(batch, default=_bytea).decode(),))
        return {uuid.UUID(row[0]): row[1] for row in cursor.fetchall()}


def prepare(connection: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_PREPARE)


class _Waiting:
    """One request's notification and, once written, its outcome. The request thread blocks on
    a lock the writer releases: the cheapest hand-off between two threads."""

    __slots__ = ("notification", "created_at", "error", "_done")

    def __init__(self, notification: NewNotification) -> None:
        self.notification = notification
        self.created_at: datetime | None = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def finish(
        self, created_at: datetime | None = None, error: BaseException | None = None
    ) -> None:
        self.created_at, self.error = created_at, error
        self._done.release()

    def wait(self) -> datetime | None:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.created_at


class AcceptWriter:
    """The process's writer; ``write()`` blocks until the notification is committed.

    Started on first use, so it lives in the process that serves requests (after gunicorn
    forks). It keeps one connection of ``engine`` (an autocommit engine: the statement commits
    as it ends, in one round trip) for as long as it works, and takes a fresh one after a
    connection error, such as a PostgreSQL restart.
    """

    def __init__(
        self,
        engine: Engine,
        on_written: Callable[[], None] = lambda: None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.engine = engine
        self._on_written = on_written
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: Any = None  # the pool's connection proxy, held by the writer thread

    def write(self, notification: NewNotification) -> datetime | None:
        """The creation time once committed, or None if its Idempotency-Key was already taken.
        Raises what writing it raised (a database error: nothing of it was written)."""
        if self._thread is None:
            self._start()
        waiting = _Waiting(notification)
        self._waiting.put(waiting)
        return waiting.wait()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="accept-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            written = self._write_batch([w.notification for w in batch])
        except (IntegrityError, DataError) as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
                return
            # One request's rows were refused; write each alone so only that one fails.
            log.warning(
                "a batch of %d accepts was refused (%s); writing each alone",
                len(batch),
                type(exc).__name__,
            )
            for waiting in batch:
                self._write([waiting])
            return
        except BaseException as exc:  # the writer must outlive any failure; its waiters get it
            for waiting in batch:
                waiting.finish(error=exc)
            return
        if written:
            self._on_written()  # after the commit, never before: wakes the relay
        for waiting in batch:
            waiting.finish(written.get(waiting.notification.id))

    def _write_batch(self, batch: list[NewNotification]) -> dict[uuid.UUID, datetime]:
        """write_batch on the writer's connection, with errors as SQLAlchemy raises them (the
        API's error handlers know those), never showing the batch's contents."""
        try:
            if self._connection is None:
                self._connection = self.engine.raw_connection()
                prepare(self._connection.dbapi_connection)
            return write_batch(self._connection.dbapi_connection, batch)
        except psycopg2.Error as exc:
            lost = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
            if lost and self._connection is not None:
                self._connection.invalidate()
                self._connection = None
            raise DBAPIError.instance(
                _EXECUTE,
                None,
                exc,
                psycopg2.Error,
                hide_parameters=True,
                connection_invalidated=lost,
            ) from exc
