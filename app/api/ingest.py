"""Group commit: the accepts of one API process's requests, written together.

Each request hands its notification to the process's one writer and waits (requests and the
writer are greenlets under the API's gevent worker, threads elsewhere, as in the tests). The
writer takes everything waiting (up to ``MAX_BATCH``), writes it with one statement
(app/store/accept.py), and answers each waiting request only after that statement committed, so
accepted still means committed. Under light load a batch is a single notification and costs one
hand-off; under load batches grow while the previous one commits, and PostgreSQL logs and
flushes one transaction for many notifications.
"""

from __future__ import annotations

import hashlib
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
import psycopg2.errors
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from app.api.errors import ApiError
from app.api.schemas import NotificationCreate
from app.core.db import READ_ONLY_SQL_TRANSACTION, transaction
from app.store import notifications
from app.store.accept import EXECUTE, NewDelivery, NewNotification, prepare, write_batch

log = logging.getLogger(__name__)

MAX_BATCH = 200


# Guards each waiting request's hand-over between the request and the writer (held for an
# attribute's change only).
_HAND_OVER = threading.Lock()


class _Waiting:
    """One request's notification and, once written, its outcome. The request thread blocks on
    a lock the writer releases: the cheapest hand-off between two threads."""

    __slots__ = ("_done", "created_at", "error", "notification", "state")

    def __init__(self, notification: NewNotification) -> None:
        self.notification = notification
        self.created_at: datetime | None = None
        self.error: BaseException | None = None
        self.state = "waiting"  # then "taken" by the writer, or "abandoned" by the request
        self._done = threading.Lock()
        self._done.acquire()

    def take(self) -> bool:
        """The writer's claim: False if the request gave up first (it is then not written)."""
        with _HAND_OVER:
            if self.state == "abandoned":
                return False
            self.state = "taken"
            return True

    def finish(
        self, created_at: datetime | None = None, error: BaseException | None = None
    ) -> None:
        self.created_at, self.error = created_at, error
        self._done.release()

    def wait(self, timeout: float) -> datetime | None:
        """The outcome, or a 503 after ``timeout``: one that says nothing was written if the
        writer had not taken the notification yet, and that it may have been if it had."""
        if not self._done.acquire(timeout=timeout):
            with _HAND_OVER:
                taken = self.state == "taken"
                if not taken:
                    self.state = "abandoned"
            if not taken:
                raise ApiError(
                    503,
                    "database_unavailable",
                    "The database did not answer in time; nothing was written. Retry shortly.",
                    headers={"Retry-After": "2"},
                )
            if not self._done.acquire(blocking=False):
                raise ApiError(
                    503,
                    "database_unavailable",
                    "The database did not answer in time; the notification may have been"
                    " written. Retry with the same Idempotency-Key.",
                    headers={"Retry-After": "2"},
                )
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
        answer_within: float = 4.0,
    ) -> None:
        """A request waits at most ``answer_within`` seconds for its notification's outcome
        (queued behind other batches, or behind a hung connection), then answers 503."""
        self.engine = engine
        self._answer_within = answer_within
        self._on_written = on_written
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()  # None: stop
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
        return waiting.wait(self._answer_within)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="accept-writer", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the writer once what is waiting is written, and give its connection back."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._waiting.put(None)
            thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                break
            batch = [first] if first.take() else []
            while len(batch) < self._max_batch:
                try:
                    waiting = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    self._waiting.put(None)  # stop after this batch
                    break
                if waiting.take():
                    batch.append(waiting)
            if batch:
                self._write(batch)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            written = self._write_batch([w.notification for w in batch])
        except Refused as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc.naming(batch[0].notification))
                return
            # One request's rows were refused; write each alone so only that one fails.
            log.warning(
                "a batch of %d accepts was refused (%s); writing each alone",
                len(batch),
                exc.rule,
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
        """write_batch on the writer's connection. What the batch's contents caused (a value the
        encoder or PostgreSQL refuses) is :class:`Refused`; anything else is raised as SQLAlchemy
        raises it (the API's error handlers know those). Neither shows the batch's contents."""
        try:
            if self._connection is None:
                self._connection = self.engine.raw_connection()
                prepare(self._connection.dbapi_connection)
            return write_batch(self._connection.dbapi_connection, batch)
        except TypeError as exc:  # orjson.JSONEncodeError: e.g. an integer past 64 bits in data
            raise Refused("", "not_storable", "cannot be encoded as JSON") from exc
        except psycopg2.Error as exc:
            if isinstance(exc, _REFUSED_BY_POSTGRESQL):
                raise Refused.of(exc) from exc
            # A write refused as read-only comes from a demoted primary: like a lost connection,
            # the next batch must find the new primary on a fresh one.
            lost = isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) or (
                exc.pgcode == READ_ONLY_SQL_TRANSACTION
            )
            if lost and self._connection is not None:
                self._connection.invalidate()
                self._connection = None
            if lost:
                raise OperationalError(
                    EXECUTE, None, exc, hide_parameters=True, connection_invalidated=True
                ) from exc
            raise DBAPIError.instance(
                EXECUTE,
                None,
                exc,
                psycopg2.Error,
                hide_parameters=True,
                connection_invalidated=lost,
            ) from exc


# What a batch's contents can make PostgreSQL refuse: data exceptions (class 22: a value out of
# range, an escape jsonb cannot store), constraint violations (23) and program limits (54: a
# value nested too deep). psycopg2 files class 54 under OperationalError, which otherwise means
# a lost connection, so it is named here before that test.
_REFUSED_BY_POSTGRESQL = (
    psycopg2.DataError,
    psycopg2.IntegrityError,
    psycopg2.errors.ProgramLimitExceeded,
)

# The request fields the columns of the accept statement hold; the rest are not the caller's.
_FIELD_OF_COLUMN = {
    "recipient_email": "recipientEmail",
    "recipient_phone": "recipientPhone",
    "user_id": "userId",
    "category": "category",
    "device_tokens": "deviceTokens",
    "webhook_url": "webhookUrl",
    "subject": "subject",
    "body": "body",
    "html_body": "htmlBody",
    "data": "data",
    "send_at": "sendAt",
    "expires_at": "expiresAt",
    "idempotency_key": "Idempotency-Key",
}


class Refused(Exception):
    """The notification's own contents cannot be stored (the schema should have refused them):
    ``field`` names the request field when it is known, ``rule`` says why."""

    def __init__(self, field: str, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.rule = rule
        self.reason = reason

    @classmethod
    def of(cls, exc: psycopg2.Error) -> Refused:
        diag = exc.diag
        message = diag.message_primary or type(exc).__name__
        field = _FIELD_OF_COLUMN.get(diag.column_name or "", "")
        return cls(field, "not_storable", f"refused by the database: {message}")

    def naming(self, notification: NewNotification) -> Refused:
        """This refusal, naming the field when PostgreSQL did not: the first one holding what
        the encoder or PostgreSQL cannot take (U+0000, an integer past 64 bits)."""
        if self.field:
            return self
        for name, field in _FIELD_OF_COLUMN.items():
            if _unstorable(getattr(notification, name)):
                return Refused(field, self.rule, self.reason)
        return self


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_unstorable(v) for v in value)
    return False


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Accepted:
    notification: dict[str, Any]
    replayed: bool


def request_fingerprint(request: NotificationCreate) -> bytes:
    """Hash of the request's meaning, so key order and whitespace do not make a different body."""
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


def accept(
    writer: AcceptWriter,
    project_id: str,
    api_key_id: uuid.UUID,
    request: NotificationCreate,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    template_version: int | None = None,
    layout_version: int | None = None,
) -> Accepted:
    """Commit the notification with its deliveries and outbox events through the process's
    group-committing writer, or replay a prior accept. The writer wakes the relay after the
    commit, never before."""
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = request_fingerprint(request)
        replay = _replay(writer.engine, project_id, idempotency_key, fingerprint)
        if replay is not None:
            return replay
    new = NewNotification(
        id=uuid.uuid4(),
        project_id=project_id,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        request_id=request_id,
        type=request.type.value,
        category=request.category,
        priority=request.priority.value,
        priority_rank=request.priority.rank,
        recipient_email=request.recipient_email,
        recipient_phone=request.recipient_phone,
        user_id=request.user_id,
        device_tokens=request.device_tokens,
        webhook_url=str(request.webhook_url) if request.webhook_url else None,
        subject=request.subject,
        body=request.body,
        html_body=request.html_body,
        data=request.data,
        send_at=request.send_at,
        expires_at=request.expires_at,
        deliveries=tuple(NewDelivery(uuid.uuid4(), c.value) for c in request.channels),
        template_key=request.template,
        template_version=template_version,
        layout_version=layout_version,
        locale=request.locale,
    )
    created_at = writer.write(new)
    if created_at is None:
        # Two requests with one Idempotency-Key raced; the other committed first.
        assert idempotency_key is not None and fingerprint is not None
        replay = _replay(writer.engine, project_id, idempotency_key, fingerprint)
        assert replay is not None, "a skipped notification always has a committed twin"
        return replay
    return Accepted(_accepted_view(new, created_at), replayed=False)


def _replay(
    engine: Engine, project_id: str, idempotency_key: str, fingerprint: bytes
) -> Accepted | None:
    with transaction(engine) as conn:
        found = notifications.find_by_idempotency_key(conn, project_id, idempotency_key)
        if found is None:
            return None
        notification_id, request_hash = found
        if request_hash != fingerprint:
            raise IdempotencyConflict(idempotency_key)
        view = notifications.get(conn, project_id, notification_id)
    assert view is not None
    return Accepted(view, replayed=True)


def _accepted_view(new: NewNotification, created_at: datetime) -> dict[str, Any]:
    """What GET would show right after the commit, without reading it back."""
    return {
        "id": new.id,
        "type": new.type,
        "priority": new.priority,
        "category": new.category,
        "status": "PENDING",
        "sendAt": new.send_at,
        "expiresAt": new.expires_at,
        "createdAt": created_at,
        "deliveries": [
            {
                "id": delivery_id,
                "channel": channel,
                "status": "PENDING",
                "attempts": 0,
                "errorCode": None,
                "lastError": None,
                "providerMessageId": None,
                "nextAttemptAt": None,
                "createdAt": created_at,
                "updatedAt": created_at,
                "sentAt": None,
                # As _VIEW shows it: PUSH lists its devices from the first attempt on.
                "devices": [] if channel == "PUSH" else None,
                "locale": None,  # templated: the worker renders and records it
                "content": None,
            }
            for delivery_id, channel in sorted(
                ((d.id, d.channel) for d in new.deliveries), key=lambda pair: pair[1]
            )
        ],
    }
