"""Group commit of accepts (app/api/ingest.py, app/store/accept.py): requests that wait together
are written together, each is answered only once committed, and one bad request or a lost
connection fails only what it must."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from app.api.ingest import AcceptWriter, Refused
from app.api.keys import create_api_key
from app.core.db import make_engine
from app.core.settings import Settings
from app.store.accept import NewDelivery, NewNotification, prepare, write_batch
from tests.helpers.db import wait_for_lock_waiter

WAIT = 10.0  # seconds: every bounded wait below


@pytest.fixture
def key_id(engine: Engine) -> uuid.UUID:
    return create_api_key(engine, "ingest").id


@pytest.fixture
def writer(base_settings: Settings) -> Iterator[AcceptWriter]:
    # No lock deadline: the tests hold the writer's statement on a lock for as long as they
    # need, however slow the machine.
    unlocked = replace(base_settings, database_lock_timeout_ms=0)
    ingest_engine = make_engine(unlocked, pool_size=2, pre_ping=False, autocommit=True)
    yield AcceptWriter(ingest_engine)
    ingest_engine.dispose()


def new(key_id: uuid.UUID, *, body: str = "hello", idempotency_key: str | None = None) -> Any:
    return NewNotification(
        id=uuid.uuid4(),
        project_id="default",
        api_key_id=key_id,
        idempotency_key=idempotency_key,
        request_hash=b"\x01\x02",
        request_id="req-1",
        type="TRANSACTIONAL",
        category=None,
        priority="HIGH",
        priority_rank=0,
        recipient_email="someone@example.com",
        recipient_phone=None,
        user_id=None,
        device_tokens=None,
        webhook_url=None,
        subject="s",
        body=body,
        html_body=None,
        data={"order": 7},
        send_at=None,
        expires_at=None,
        deliveries=(NewDelivery(uuid.uuid4(), "EMAIL"), NewDelivery(uuid.uuid4(), "WEBHOOK")),
    )


@contextmanager
def outbox_locked(engine: Engine) -> Iterator[None]:
    """Holds a lock on outbox_event that makes the writer's statement wait until the block ends."""
    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE outbox_event IN ACCESS EXCLUSIVE MODE"))
        yield


def in_threads(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[threading.Thread]]:
    """Start each call on its own thread; the list fills with its result or its exception."""
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return outcomes, threads


def transactions_of(engine: Engine, ids: list[uuid.UUID]) -> int:
    """How many transactions wrote these notifications (rows of one transaction share xmin)."""
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(DISTINCT xmin::text) FROM notification"
                    " WHERE id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [str(i) for i in ids]},
            )
        )


def test_requests_waiting_together_are_committed_in_one_transaction_with_all_their_rows(
    engine: Engine, writer: AcceptWriter, key_id: uuid.UUID
) -> None:
    first = new(key_id)
    waiting = [new(key_id) for _ in range(20)]
    with outbox_locked(engine):
        outcomes, threads = in_threads([lambda: writer.write(first)])
        wait_for_lock_waiter(engine)  # the first batch is in flight and blocked
        more, more_threads = in_threads([lambda n=n: writer.write(n) for n in waiting])
        time.sleep(0.3)  # let every request reach the writer's queue
        assert all(o is None for o in outcomes + more), "answered before the commit"
    for t in threads + more_threads:
        t.join(WAIT)
    assert all(o is not None and not isinstance(o, Exception) for o in outcomes + more)
    assert transactions_of(engine, [n.id for n in waiting]) == 1
    assert transactions_of(engine, [first.id, *[n.id for n in waiting]]) == 2
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT count(DISTINCT d.id), count(o.id), count(*) FILTER"
                " (WHERE o.notification_id = n.id AND o.request_id = 'req-1'"
                "  AND o.status = 'PENDING' AND o.priority = 0)"
                " FROM notification n JOIN delivery d ON d.notification_id = n.id"
                " JOIN outbox_event o ON o.delivery_id = d.id"
            )
        ).one()
        data = conn.scalar(text("SELECT data FROM notification WHERE id = :id"), {"id": first.id})
    assert tuple(counts) == (42, 42, 42)
    assert data == {"order": 7}


def test_a_request_the_database_refuses_fails_alone_and_its_batch_mates_are_written(
    engine: Engine, writer: AcceptWriter, key_id: uuid.UUID
) -> None:
    good = [new(key_id) for _ in range(4)]
    bad = new(key_id, body="nul \x00 is not storable in text")
    with outbox_locked(engine):
        _, first = in_threads([lambda: writer.write(new(key_id))])
        wait_for_lock_waiter(engine)
        outcomes, threads = in_threads([lambda n=n: writer.write(n) for n in [*good, bad]])
        time.sleep(0.3)
    for t in first + threads:
        t.join(WAIT)
    assert isinstance(outcomes[-1], Refused) and outcomes[-1].field == "body"
    assert all(not isinstance(o, Exception) and o is not None for o in outcomes[:-1])
    with engine.connect() as conn:
        written = conn.scalars(
            text("SELECT id FROM notification WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [str(n.id) for n in [*good, bad]]},
        ).all()
    assert sorted(map(str, written)) == sorted(str(n.id) for n in good)


def test_one_idempotency_key_twice_in_a_batch_writes_one_and_reports_the_other_skipped(
    engine: Engine, base_settings: Settings, key_id: uuid.UUID
) -> None:
    ingest_engine = make_engine(base_settings, pool_size=1, pre_ping=False, autocommit=True)
    first, second = new(key_id, idempotency_key="k-1"), new(key_id, idempotency_key="k-1")
    raw = ingest_engine.raw_connection()
    try:
        prepare(raw.dbapi_connection)
        written = write_batch(raw.dbapi_connection, [first, second])
    finally:
        raw.close()
        ingest_engine.dispose()
    assert list(written) == [first.id]
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM delivery")) == 2
        assert conn.scalar(text("SELECT count(*) FROM outbox_event")) == 2


def terminate_writers(engine: Engine) -> int:
    """Ends the connections of this database's accept writers, as a PostgreSQL restart would."""
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query LIKE 'EXECUTE accept_batch%' AND datname = current_database()"
                )
            )
        )


def test_a_lost_connection_fails_the_batch_in_flight_and_the_next_one_reconnects(
    engine: Engine, writer: AcceptWriter, key_id: uuid.UUID
) -> None:
    assert writer.write(new(key_id)) is not None
    assert terminate_writers(engine) >= 1  # this writer's, and any idle one an earlier test left
    with pytest.raises(OperationalError) as lost:
        writer.write(new(key_id))
    assert "someone@example.com" not in str(lost.value)  # the batch is never shown
    later = new(key_id)
    assert writer.write(later) is not None
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification")) == 2


def test_the_api_answers_503_when_the_writer_lost_its_connection_and_202_right_after(
    engine: Engine, client: FlaskClient, auth: dict[str, str]
) -> None:
    seed = {
        "channels": ["EMAIL"],
        "recipientEmail": "someone@example.com",
        "subject": "s",
        "body": "hi",
    }
    assert client.post("/api/v1/notifications", json=seed, headers=auth).status_code == 202
    assert terminate_writers(engine) >= 1

    refused = client.post("/api/v1/notifications", json=seed, headers=auth)
    again = client.post("/api/v1/notifications", json=seed, headers=auth)

    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "database_unavailable"
    assert "someone@example.com" not in refused.get_data(as_text=True)
    assert again.status_code == 202
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification")) == 2
