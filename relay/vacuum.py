"""Vacuuming the tables the relay and the workers churn, on the relay's timer.

Every dispatched outbox row leaves a dead entry in the claim's partial index, and every
delivery step one in the sweeper's in-flight index. Both scans start at the oldest entries, so
until a VACUUM removes the dead ones each claim walks past all of them: at 500 accepts/s the
claim's share of accept → provider latency grew from 8 to 30 ms within a minute
(bench/RESULTS.md). Autovacuum comes too seldom for a queue table (a table is looked at once a
minute, and vacuumed after a fifth of it changed) and may be off; VACUUM of recently changed
pages only is cheap.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

# SKIP_LOCKED: another relay's VACUUM in progress is enough; never wait for it.
_VACUUM = text("VACUUM (SKIP_LOCKED) outbox_event, delivery")


def vacuum_queues(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(_VACUUM)
