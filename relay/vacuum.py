"""Vacuuming the outbox, on the relay's timer.

Every dispatched row leaves a dead entry in the claim's partial index, and the claim's index
scan starts at the oldest entries, so until a VACUUM removes the dead ones each claim walks past
all of them: at 500 accepts/s the claim's share of accept → provider latency grew from 8 to 30 ms
within a minute (bench/RESULTS.md). Autovacuum comes too seldom for a queue table (it looks at a
table once a minute and vacuums it after a fifth of it changed) and may be off. VACUUM reads
only the pages changed since the last one; PostgreSQL skips the index pass while few pages hold
dead rows, and then the claim's scans mark the dead entries themselves.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

# SKIP_LOCKED: another relay's VACUUM in progress is enough; never wait for it.
_VACUUM = text("VACUUM (SKIP_LOCKED) outbox_event")


def vacuum_outbox(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(_VACUUM)
