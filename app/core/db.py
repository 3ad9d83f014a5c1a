"""Database engine, the schema's migrations, and the transaction convention.

Store functions (app/store/) take a ``Connection`` and plain values and never open a
transaction; their caller (a blueprint, the task, the relay loop) owns the unit of work with
``transaction(engine)``, or ``retried_transaction`` where a pooled connection may be stale.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError

from app.core.settings import Settings


def sqlalchemy_url(database_url: str) -> URL:
    """DATABASE_URL as SQLAlchemy should open it: always through psycopg2, the chosen driver
    (SQLAlchemy 2.1 would pick psycopg 3 for a bare ``postgresql://``). A URL naming several
    hosts (libpq's ``postgresql://u@a:5432,b:5433/db?target_session_attrs=read-write``) is
    accepted too: see ``_hosts_as_query``."""
    return make_url(_hosts_as_query(database_url)).set(drivername="postgresql+psycopg2")


def _hosts_as_query(database_url: str) -> str:
    """libpq's multi-host URL in the form SQLAlchemy parses: the host list moved to the query.

    SQLAlchemy's URL parser takes one ``host:port`` only, but its psycopg2 dialect hands
    ``?host=a,b&port=5432,5433`` to libpq as the same host list, which then tries each host in
    turn (and, with ``target_session_attrs=read-write``, skips a standby). A URL with one host
    is returned unchanged.
    """
    scheme, sep, rest = database_url.partition("://")
    authority, _, tail = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    if not sep or "," not in hostlist:
        return database_url
    hosts, ports = [], []
    for entry in hostlist.split(","):
        # "[::1]:5433", "db1:5432" or "db2" (libpq's default port); brackets only shield an
        # IPv6 address's colons, libpq's host list takes it bare.
        host, port = entry, ""
        if entry.startswith("["):
            host, _, after = entry[1:].partition("]")
            port = after.removeprefix(":")
        elif ":" in entry:
            host, port = entry.rsplit(":", 1)
        hosts.append(host)
        ports.append(port)
    path, question, query = tail.partition("?")
    moved = f"host={quote(','.join(hosts), safe=',')}"
    if any(ports):
        moved += f"&port={','.join(ports)}"
    query = f"{moved}&{query}" if question and query else moved
    return f"{scheme}://{userinfo}{at}/{path}?{query}"


# SQLSTATE read_only_sql_transaction: the server refused a write, as a demoted primary does
# (or the one an old address still resolves to after a failover).
READ_ONLY_SQL_TRANSACTION = "25006"


def _refused_write_means_primary_lost(context: ExceptionContext) -> None:
    """Treat the error as a lost connection: SQLAlchemy then empties the pool, and the next
    connection finds the primary (``target_session_attrs=read-write``) instead of writing to a
    standby for as long as the pooled connections live."""
    if getattr(context.original_exception, "pgcode", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True


# How long past its statement_timeout a silent server is waited for: a live server cancels
# the statement itself first, with a clearer error than a dropped connection.
ANSWER_GRACE_SECONDS = 1.0


def make_engine(
    settings: Settings,
    *,
    pool_size: int = 5,
    pre_ping: bool = True,
    autocommit: bool = False,
    statement_timeout_ms: int | None = None,
) -> Engine:
    """An engine whose every connection has the settings' deadlines: ``connect_timeout``, and
    ``statement_timeout`` (``statement_timeout_ms`` if given; 0 = none, for administrative
    work), ``lock_timeout`` and ``idle_in_transaction_session_timeout`` set at start-up, so no
    statement pays a SET."""
    install_deadlines()
    url = sqlalchemy_url(settings.database_url)
    statement = (
        settings.database_statement_timeout_ms
        if statement_timeout_ms is None
        else statement_timeout_ms
    )
    deadlines = (
        f"-c statement_timeout={statement}"
        f" -c lock_timeout={settings.database_lock_timeout_ms}"
        " -c idle_in_transaction_session_timeout="
        f"{settings.database_idle_in_transaction_timeout_ms}"
    )
    given = url.query.get("options")
    options = (
        f"{given if isinstance(given, str) else ' '.join(given)} {deadlines}"
        if given
        else deadlines
    )
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        # Waiting for a pooled connection is bounded like making one: with PostgreSQL hung,
        # every connection of the pool is stuck and the requests behind them must not queue.
        pool_timeout=settings.database_connect_timeout_seconds,
        connect_args={
            "connect_timeout": settings.database_connect_timeout_seconds,
            "application_name": "notification-service",
            "options": options,
        },
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine, "handle_error", _refused_write_means_primary_lost)
    return engine


def install_deadlines() -> None:
    """Make psycopg2 wait for PostgreSQL through ``wait_for_server`` in this process.

    libpq's own waits know no deadline once a connection is up (a server that accepted a
    statement and hangs is waited for forever), and none at all for a connection opened
    asynchronously, which is how a wait callback (gevent's, in the API) opens them. Through
    gevent's patched ``select`` the same callback lets other greenlets run while it waits.
    """
    if psycopg2.extensions.get_wait_callback() is not wait_for_server:
        psycopg2.extensions.set_wait_callback(wait_for_server)


_STATEMENT_TIMEOUT = re.compile(r"statement_timeout\s*=\s*(\d+)")


@lru_cache(maxsize=64)
def _deadlines(dsn: str) -> tuple[float | None, float | None]:
    """(seconds to connect, seconds to answer a statement) that ``dsn`` asks for, None = no
    limit: a connection made without our options (Alembic's) keeps libpq's defaults."""
    params = psycopg2.extensions.parse_dsn(dsn)
    connect = int(params.get("connect_timeout") or 0)
    found = _STATEMENT_TIMEOUT.findall(params.get("options", ""))
    statement = int(found[-1]) if found else 0
    return (
        max(connect, 2) if connect else None,  # as libpq reads it: 1 means 2
        statement / 1000 + ANSWER_GRACE_SECONDS if statement else None,
    )


def wait_for_server(conn: Any) -> None:
    """psycopg2's wait callback: poll ``conn`` until PostgreSQL answered, or raise
    OperationalError once its deadline passed (psycopg2 then closes the connection, so the
    pool discards it). Connecting may take ``connect_timeout``; a statement its
    ``statement_timeout`` and ``ANSWER_GRACE_SECONDS``."""
    connect, statement = _deadlines(conn.dsn)
    connecting = conn.status == psycopg2.extensions.STATUS_SETUP
    limit = connect if connecting else statement
    deadline = None if limit is None else time.monotonic() + limit
    watched = (-1, 0)
    poller = select.poll()
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        events = select.POLLIN if state == psycopg2.extensions.POLL_READ else select.POLLOUT
        if (fd := conn.fileno()) != watched[0] or events != watched[1]:
            if fd != watched[0]:
                # libpq tried the next host of a multi-host URL on a new socket: like libpq,
                # give each host the whole connect_timeout.
                poller = select.poll()
                if deadline is not None and limit is not None and watched[0] != -1:
                    deadline = time.monotonic() + limit
            poller.register(fd, events)
            watched = (fd, events)
        if deadline is None:
            poller.poll()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (not poller.poll(remaining * 1000) and time.monotonic() >= deadline):
            what = "connection" if connecting else "statement"
            raise psycopg2.OperationalError(
                f"PostgreSQL did not answer the {what} within {limit:g}s"
            )


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One unit of work: commits when the block ends, rolls back if it raises."""
    with engine.begin() as conn:
        yield conn


T = TypeVar("T")


def retried_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work(conn)`` in one transaction, run once more if its connection turned out to be dead.

    For the relay's and the workers' engines, which do not ping every connection they check
    out (a ping per checkout was two of a delivery task's eight round trips). After a
    PostgreSQL restart a pooled connection fails its first statement; SQLAlchemy then discards
    the whole pool, and the second run gets a fresh connection. ``work`` must be safe to run
    twice: a guarded UPDATE is (the commit that was lost either happened, and the rerun finds
    nothing to move, or it did not).
    """
    try:
        with transaction(engine) as conn:
            return work(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with transaction(engine) as conn:
        return work(conn)


def ping(conn: Connection) -> None:
    """Raises unless the database answers."""
    conn.execute(text("SELECT 1"))


def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it is missing. Returns True if created."""
    url = sqlalchemy_url(database_url)
    if not url.database:
        raise ValueError("the database URL names no database")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(url.database)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def migrate(database_url: str) -> None:
    """Create the database if needed and bring its schema to the newest revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    ensure_database(database_url)
    migrations = resources.files("migrations")
    config = Config(str(migrations / "alembic.ini"))
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("version_locations", str(migrations / "versions"))
    # ConfigParser treats % as interpolation; a URL-encoded password may contain one.
    url = sqlalchemy_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
