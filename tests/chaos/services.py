"""Private PostgreSQL and Redis servers for the chaos suite, which restarts them at will.

Each runs on a free port in a temporary directory, so restarting or flushing it disturbs no
other test and no other user of the machine's shared servers.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import redis

from tests.helpers.net import free_port

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


def _as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    # PostgreSQL refuses to run as root; the Debian package's postgres user runs it.
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=60
    )


class PrivatePostgres:
    def __init__(self, *, initdb: bool = True) -> None:
        # Its own directory under /tmp: the postgres user cannot enter pytest's private ones.
        self.directory = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        shutil.chown(self.directory, "postgres")
        if not initdb:
            return  # a standby's data comes from its primary (standby())
        done = _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/chaos"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        done = _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.directory / "server.log"),
            "start",
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr}")

    def restart(self) -> None:
        """Fast shutdown (every connection dropped, open transactions rolled back), then up."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.start()

    def crash(self) -> None:
        """Immediate shutdown, as a machine that dies: no checkpoint, every connection cut."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)

    def standby(self) -> PrivatePostgres:
        """A streaming standby of this (running) server, started: a base backup with the
        recovery settings written (-R), on a port of its own."""
        standby = PrivatePostgres(initdb=False)
        done = _as_postgres(
            str(PG_BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
            *("-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"),
        )
        if done.returncode != 0:
            standby.stop()
            raise RuntimeError(f"pg_basebackup failed: {done.stderr}")
        standby.start()
        return standby

    def require_synchronous_standby(self, timeout: float = 30.0) -> None:
        """From now on a commit returns only once a standby has flushed it, so a promoted
        standby holds every transaction a client saw committed."""
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                cursor.execute("SELECT pg_reload_conf()")
                deadline = time.monotonic() + timeout
                while True:
                    cursor.execute("SELECT sync_state FROM pg_stat_replication")
                    if ("sync",) in cursor.fetchall():
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError("no synchronous standby in time")
                    time.sleep(0.1)
        finally:
            conn.close()

    def promote(self) -> None:
        """A standby becomes a primary that accepts writes (pg_ctl waits until it does)."""
        done = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote")
        if done.returncode != 0:
            raise RuntimeError(f"promotion failed: {done.stderr}")


class PrivateRedis:
    def __init__(self, directory: Path, *, replica_of: PrivateRedis | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.replica_of = replica_of

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                # A replica's first sync starts at once (the default waits 5 s for others).
                "--repl-diskless-sync-delay",
                "0",
                *(
                    ("--replicaof", "127.0.0.1", str(self.replica_of.port))
                    if self.replica_of
                    else ()
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def flush_and_restart(self) -> None:
        """Everything Redis held is gone: queued tasks, unacknowledged ones, scheduled retries."""
        redis.Redis.from_url(self.url).flushall()
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class PrivateSentinel:
    """A Redis Sentinel (Debian's redis-sentinel) watching ``master`` as MASTER_NAME, quick to
    decide: a master silent for a second is down once two Sentinels agree."""

    MASTER_NAME = "failover-test"

    def __init__(self, directory: Path, master: PrivateRedis, quorum: int = 2) -> None:
        self.port = free_port()
        self.config = directory / f"sentinel-{self.port}.conf"
        # Sentinel rewrites its configuration file as it learns, so each has its own.
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {self.MASTER_NAME} 5000\n"
        )
        self.process = subprocess.Popen(
            ["redis-sentinel", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1, decode_responses=True
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def master(self) -> dict[str, object]:
        """What this Sentinel knows of the master: its port, replicas and fellow Sentinels."""
        found: dict[str, object] = self.client.sentinel_master(self.MASTER_NAME)
        return found

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait(10)
