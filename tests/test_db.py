"""The one transaction helper that survives a lost connection."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from app.core.db import make_engine, retried_transaction
from app.core.settings import Settings

BACKEND_PID = text("SELECT pg_backend_pid()")


def cut(engine: Engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_transaction_whose_pooled_connection_was_cut_runs_again_on_a_fresh_one(
    database_url: str, engine: Engine
) -> None:
    unpinged = make_engine(Settings(database_url=database_url), pool_size=1, pre_ping=False)
    first_pid = retried_transaction(unpinged, lambda conn: conn.scalar(BACKEND_PID))
    cut(engine, first_pid)  # as a PostgreSQL restart does to every pooled connection
    runs: list[int] = []

    def work(conn: Connection) -> int:
        runs.append(1)
        return int(conn.scalar(BACKEND_PID))

    second_pid = retried_transaction(unpinged, work)

    assert len(runs) == 2
    assert second_pid != first_pid
    unpinged.dispose()


def test_an_error_that_is_not_a_lost_connection_is_raised_without_a_second_run(
    engine: Engine,
) -> None:
    runs: list[int] = []

    def work(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        retried_transaction(engine, work)
    assert len(runs) == 1
