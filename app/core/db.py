"""Database engine, the schema's migrations, and the transaction convention.

Store functions (app/store/) take a ``Connection`` and plain values and never open a
transaction; their caller (a blueprint, the task, the relay loop) owns the unit of work with
``transaction(engine)``, or ``retried_transaction`` where a pooled connection may be stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TypeVar
from urllib.parse import quote

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


def make_engine(
    settings: Settings, *, pool_size: int = 5, pre_ping: bool = True, autocommit: bool = False
) -> Engine:
    engine = create_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args={"connect_timeout": 5, "application_name": "notification-service"},
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine, "handle_error", _refused_write_means_primary_lost)
    return engine


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
