"""One request's bad value fails that request alone: the group commit writes its batch mates,
and the schema refuses what the encoder or PostgreSQL cannot store before it reaches the writer."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.api.ingest import AcceptWriter, Refused
from app.api.keys import create_api_key
from app.core.db import make_engine
from app.core.settings import Settings
from app.store.accept import NewDelivery, NewNotification
from tests.helpers.db import wait_for_lock_waiter
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

WAIT = 10.0


@pytest.fixture
def writer(base_settings: Settings) -> Iterator[AcceptWriter]:
    ingest_engine = make_engine(base_settings, pool_size=2, pre_ping=False, autocommit=True)
    yield AcceptWriter(ingest_engine)
    ingest_engine.dispose()


def notification(key_id: uuid.UUID, body: str = "hello", data: Any = None) -> NewNotification:
    return NewNotification(
        id=uuid.uuid4(),
        project_id="default",
        api_key_id=key_id,
        idempotency_key=None,
        request_hash=None,
        request_id=None,
        type="TRANSACTIONAL",
        category=None,
        priority="NORMAL",
        priority_rank=1,
        recipient_email=None,
        recipient_phone=None,
        user_id=None,
        device_tokens=None,
        webhook_url="https://example.com/hook",
        subject=None,
        body=body,
        html_body=None,
        data=data,
        send_at=None,
        expires_at=None,
        deliveries=(NewDelivery(uuid.uuid4(), "WEBHOOK"),),
    )


def written_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(i) for i in conn.scalars(text("SELECT id FROM notification"))}


def test_values_the_encoder_or_postgresql_refuse_fail_alone_naming_their_field(
    engine: Engine, writer: AcceptWriter
) -> None:
    key_id = create_api_key(engine, "poison").id
    good = [notification(key_id) for _ in range(6)]
    bad = {
        "data": notification(key_id, data={"n": 2**70}),  # the batch's encoder refuses it
        "body": notification(key_id, body="nul \x00 in text"),  # PostgreSQL refuses it
    }
    outcomes: dict[uuid.UUID, Any] = {}

    def write(n: NewNotification) -> None:
        try:
            outcomes[n.id] = writer.write(n)
        except Exception as exc:
            outcomes[n.id] = exc

    # The outbox is locked while the first write waits, so everything else queues into one batch.
    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE outbox_event IN ACCESS EXCLUSIVE MODE"))
        first = threading.Thread(target=write, args=(notification(key_id),))
        first.start()
        wait_for_lock_waiter(engine)
        threads = [threading.Thread(target=write, args=(n,)) for n in [*good, *bad.values()]]
        for t in threads:
            t.start()
        while writer._waiting.qsize() < len(threads):  # all queued behind the first batch
            threading.Event().wait(0.01)
    for t in [first, *threads]:
        t.join(WAIT)

    for field, n in bad.items():
        refused = outcomes[n.id]
        assert isinstance(refused, Refused), refused
        assert (refused.field, refused.rule) == (field, "not_storable")
    assert all(
        outcomes[n.id] is not None and not isinstance(outcomes[n.id], Exception) for n in good
    )
    assert written_ids(engine) >= {str(n.id) for n in good}
    assert not written_ids(engine) & {str(n.id) for n in bad.values()}


WELL_FORMED = {"channels": ["WEBHOOK"], "webhookUrl": "https://example.com/hook", "body": "ok"}
POISONS = {
    # (raw body, accepted answers)
    "integer past 64 bits": ('{"n": 123456789012345678901234567890}', {400}),
    "NaN": ('{"n": NaN}', {400}),
    "1e400": ('{"n": 1e400}', {400}),
    "duplicate key": ('{"n": 1, "n": 2}', {400}),
    "NUL": ('{"n": "\\u0000"}', {422}),
    "nested too deep": ('{"n": ' + "[" * 40 + "]" * 40 + "}", {422}),
}


def raw_body(data: str, marker: str) -> bytes:
    return (
        '{"channels":["WEBHOOK"],"webhookUrl":"https://example.com/hook",'
        f'"body":"{marker}","data":{data}}}'
    ).encode()


def test_180_concurrent_requests_with_a_few_poisoned_accept_every_well_formed_one(
    processes: Processes, engine: Engine
) -> None:
    port = free_port()
    processes.api(port, API_WORKERS="1", RATE_LIMIT_PER_SECOND="100000", RATE_LIMIT_BURST="100000")
    key = create_api_key(engine, "poison").key
    url = f"http://127.0.0.1:{port}/api/v1/notifications"
    bodies: list[tuple[str, bytes]] = []
    for i in range(180):
        name = list(POISONS)[i // 30] if i % 30 == 7 else "well formed"
        if name == "well formed":
            bodies.append((name, json.dumps({**WELL_FORMED, "data": {"i": i}}).encode()))
        else:
            bodies.append((name, raw_body(POISONS[name][0], f"poisoned-{i}")))

    def send(body: bytes) -> int:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(send, [b for _, b in bodies]))

    by_kind = Counter(
        (name if name == "well formed" else "poisoned", s)
        for (name, _), s in zip(bodies, statuses, strict=True)
    )
    assert by_kind[("well formed", 202)] == sum(1 for n, _ in bodies if n == "well formed"), by_kind
    for (name, _), status in zip(bodies, statuses, strict=True):
        if name != "well formed":
            assert status in POISONS[name][1], (name, status)
    with engine.connect() as conn:
        assert (
            conn.scalar(text("SELECT count(*) FROM notification WHERE body LIKE 'poisoned-%'")) == 0
        )
        assert (
            conn.scalar(text("SELECT count(*) FROM notification")) == by_kind[("well formed", 202)]
        )
