"""The status state machine under any interleaving of duplicate tasks, cancels and sweeps.

Two tasks (A and B) carry the same delivery, as at-least-once delivery and the sweeper allow.
Hypothesis interleaves their claims and outcome writes with cancels, relay claims and sweeps,
all through the real guarded statements against PostgreSQL; the audit trail must never show a
backward move or a change out of a terminal state. Each example starts from empty tables, so the
relay's claim and the sweep (both LIMIT 10, oldest first) reach its delivery, not rows that
earlier examples left behind.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from app.core.domain import TERMINAL_STATUSES, DeliveryStatus
from app.store import deliveries
from app.store.deliveries import DeliveryResult
from app.store.outbox import claim_due
from tests.helpers.factories import delete_all_rows

RANK = {"PENDING": 0, "QUEUED": 1, "SENDING": 2, "RETRYING": 2}
OPERATIONS = st.lists(
    st.sampled_from(
        [
            "relay",
            "claim A",
            "claim B",
            "sent A",
            "sent B",
            "retry A",
            "retry B",
            "fail A",
            "fail B",
            "cancel",
            "sweep",
        ]
    ),
    min_size=1,
    max_size=25,
)


def _delivery(engine: Engine, key_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    notification_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notification (id, project_id, api_key_id, request_hash, type,"
                " priority, body) VALUES (:n, 'default', :k, '\\x00', 'SYSTEM', 'NORMAL', 'b');"
                " INSERT INTO delivery (id, notification_id, channel) VALUES (:d, :n, 'EMAIL');"
                " INSERT INTO outbox_event (delivery_id, channel, priority) VALUES (:d, 'EMAIL', 1)"
            ),
            {"n": str(notification_id), "k": str(key_id), "d": str(delivery_id)},
        )
    return notification_id, delivery_id


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_no_interleaving_of_duplicate_tasks_moves_a_delivery_backward(
    engine: Engine, operations: list[str]
) -> None:
    delete_all_rows(engine)  # clean_state runs once per test, not once per example
    key = create_api_key(engine, "property")
    notification_id, delivery_id = _delivery(engine, key.id)
    holds = {"A": False, "B": False}  # whether that task's claim won and it may record

    for operation in operations:
        verb, _, task = operation.partition(" ")
        with engine.begin() as conn:
            if verb == "relay":
                relayed = claim_due(conn, 10)
                assert {e.delivery_id for e in relayed} <= {str(delivery_id)}
            elif verb == "claim":
                claimed = deliveries.claim_for_sending(conn, [delivery_id], lease_seconds=3600)
                holds[task] = holds[task] or any(r.status == "SENDING" for r in claimed)
            elif verb == "cancel":
                deliveries.cancel(conn, notification_id)
            elif verb == "sweep":
                assert deliveries.sweep(conn, lease_seconds=-1, max_attempts=3, limit=10) <= 1
            elif holds[task]:
                status = {
                    "sent": DeliveryStatus.SENT,
                    "retry": DeliveryStatus.RETRYING,
                    "fail": DeliveryStatus.FAILED,
                }[verb]
                deliveries.record_outcomes(
                    conn, [DeliveryResult(delivery_id, status, None, "e", "e", 0.0)]
                )
                holds[task] = False

    with engine.connect() as conn:
        trail = conn.execute(
            text(
                "SELECT from_status, to_status, attempt FROM audit_log"
                " WHERE delivery_id = :id ORDER BY id"
            ),
            {"id": str(delivery_id)},
        ).all()
    terminal = {s.value for s in TERMINAL_STATUSES}
    attempts = [row.attempt for row in trail]
    assert attempts == sorted(attempts), trail
    for row in trail:
        assert row.from_status not in terminal, f"left terminal {row.from_status}: {trail}"
        if row.to_status not in terminal:
            assert RANK[row.to_status] >= RANK[row.from_status], f"backward: {trail}"
    assert sum(1 for row in trail if row.to_status == "SENT") <= 1
