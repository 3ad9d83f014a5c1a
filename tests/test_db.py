"""The one transaction helper that survives a lost connection."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.exc import InternalError, ProgrammingError

from app.core.db import ensure_database, make_engine, migrate, retried_transaction
from app.core.settings import Settings
from tests.helpers.net import free_port

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


def test_a_url_naming_several_hosts_opens_the_first_that_answers_read_write(
    database_url: str,
) -> None:
    # libpq's multi-host form: the first host refuses connections (as a stopped primary does),
    # so the engine, the database check and the migrations must all reach the second.
    single = make_url(database_url)
    hosts = f"127.0.0.1:{free_port()},{single.host}:{single.port}"
    url = f"postgresql://{single.username}@{hosts}/{single.database}"
    url += "?target_session_attrs=read-write"
    several = make_engine(Settings(database_url=url), pool_size=1)
    try:
        with several.connect() as conn:
            assert conn.scalar(text("SELECT inet_server_port()")) == single.port
            assert conn.scalar(text("SELECT current_database()")) == single.database
    finally:
        several.dispose()
    assert ensure_database(url) is False  # found, through the second host
    migrate(url)  # the schema is current: a no-op, reached through the second host


def test_a_pooled_connection_to_a_server_that_refuses_writes_is_dropped_for_a_fresh_one(
    database_url: str,
) -> None:
    # A demoted primary still answers, but refuses every write (SQLSTATE 25006), as does an old
    # address that still resolves to it after a failover. Its pooled connections must go, so
    # the next one is made anew (and target_session_attrs then finds the new primary).
    unpinged = make_engine(Settings(database_url=database_url), pool_size=1, pre_ping=False)
    write = text("CREATE TEMPORARY TABLE written (id int)")
    try:
        with unpinged.connect() as conn:
            # This connection's server now refuses writes: what a demoted primary does.
            conn.execute(text("SET SESSION default_transaction_read_only = on"))
            conn.commit()
            demoted = conn.scalar(BACKEND_PID)
        with pytest.raises(InternalError, match="read-only transaction"):
            with unpinged.begin() as conn:
                conn.execute(write)
        # retried_transaction's second run goes to a fresh connection, which writes.
        assert retried_transaction(unpinged, lambda conn: conn.scalar(BACKEND_PID)) != demoted
        with unpinged.begin() as conn:
            conn.execute(write)
    finally:
        unpinged.dispose()
