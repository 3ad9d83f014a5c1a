"""``notification-service``: one console script, one subcommand per process kind."""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from app.api.keys import DEFAULT_PROJECT, DEFAULT_SCOPES, SCOPES
from app.core.domain import Channel
from app.core.logs import configure_logging
from app.core.settings import Settings, mask_url

ALL_QUEUES = ",".join(channel.queue for channel in Channel)


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from app.core.db import migrate

    migrate(settings.database_url)
    print(f"schema is up to date in {mask_url(settings.database_url)}")
    return 0


def cmd_create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    from app.api.keys import PROJECT_ID, create_api_key
    from app.core.db import make_engine

    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        print(f"--scopes: choose from {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    if not PROJECT_ID.match(args.project):
        print("--project: lowercase letters, digits, '-' and '_', 1 to 63", file=sys.stderr)
        return 2
    engine = make_engine(settings, pool_size=1)
    issued = create_api_key(engine, args.name, scopes, args.project)
    engine.dispose()
    print(
        f"API key {issued.id} ({issued.name}, project {issued.project_id},"
        f" scopes {','.join(issued.scopes)}) created; it and its secret are shown only once."
    )
    print(f"Webhook signing secret: {issued.webhook_secret}")
    # The key stays the last line, so scripts can take it with `tail -n 1`.
    print(issued.key)
    return 0


def _fresh_multiproc_dir() -> None:
    """Several gunicorn workers share metrics through files; the directory must exist and be
    empty when the server starts, and be set before prometheus_client is first imported."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="ns-metrics-")
    os.makedirs(path, exist_ok=True)
    for leftover in os.listdir(path):
        os.unlink(os.path.join(path, leftover))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def _raise_open_files_limit() -> None:
    """Every WebSocket is a file descriptor (two, with its ping selector): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own refusals (a bad request line 400, a URI too long 414, headers too large
    431, ...), written before any app code runs: in the API's JSON error shape, not HTML."""
    import http
    import json
    import re

    from gunicorn.util import write_nonblock

    try:
        phrase = http.HTTPStatus(status_int).phrase
    except ValueError:
        phrase = reason
    body = json.dumps(
        {
            "error": {
                "code": re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_"),
                "message": (mesg or reason)[:200],
                "fields": [],
            }
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, head.encode("latin-1") + body)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    _fresh_multiproc_dir()
    _raise_open_files_limit()
    import gunicorn.util
    from gunicorn.app.base import BaseApplication

    # gunicorn offers no hook for its error page; its workers call util.write_error at each
    # refusal, so replacing that one function makes every refusal JSON (tests/test_gunicorn_edges).
    gunicorn.util.write_error = _json_error

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", settings.api_workers)
            # gevent: every connection is a greenlet, so a request waiting on PostgreSQL or
            # Redis costs a greenlet switch, not a thread switch and a fight for the GIL
            # (measured in bench/RESULTS.md). Each WebSocket holds its connection for its
            # life; the sockets past WS_MAX_PENDING (not authenticated yet) and past
            # WS_MAX_CONNECTIONS (authenticated) are refused, so HTTP always has its
            # API_CONNECTIONS.
            self.cfg.set("worker_class", "gevent")
            self.cfg.set(
                "worker_connections",
                settings.api_connections + settings.ws_max_connections + settings.ws_max_pending,
            )
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("child_exit", _child_exit)
            self.cfg.set("post_worker_init", _close_sockets_on_sigterm)

        def load(self):  # type: ignore[no-untyped-def]
            # In the worker, after gevent patched the standard library. The app is imported
            # only here, so that no class of it was made from an unpatched threading.Thread.
            # psycopg2 waits for PostgreSQL through app/core/db.py's wait callback, whose
            # select.poll gevent has patched: other requests run meanwhile, and it keeps the
            # connect and statement deadlines that psycogreen's callback did not.
            from app.api.factory import create_app

            return create_app(settings)

    def _child_exit(_server: object, worker: Any) -> None:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)

    def _close_sockets_on_sigterm(worker: Any) -> None:
        """A stopping worker waits for its connections to end; WebSockets would not, so they
        are closed (1001, going away) and their clients reconnect to another process."""
        hub = worker.wsgi.extensions["notification_service"].hub
        stop = signal.getsignal(signal.SIGTERM)

        def _on_sigterm(signum: int, frame: Any) -> None:
            hub.shutdown()
            if callable(stop):
                stop(signum, frame)

        signal.signal(signal.SIGTERM, _on_sigterm)

    _Gunicorn().run()
    return 0


def cmd_relay(settings: Settings, _args: argparse.Namespace) -> int:
    # One process: its gauges are computed at scrape time, which multiprocess mode cannot do.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from relay.main import main

    main(settings)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.celery import app as celery

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - {c.queue for c in Channel}
    if unknown:
        print(
            f"unknown queue(s): {', '.join(sorted(unknown))}; known: {ALL_QUEUES}", file=sys.stderr
        )
        return 2
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(queues)}",
            f"--pool={settings.worker_pool}",
            f"--concurrency={settings.worker_concurrency}",
            f"--loglevel={settings.log_level}",
            f"--hostname={'+'.join(queues)}@%h",
            # Mingle only syncs revoked task ids at start-up, which this service never uses.
            "--without-mingle",
        ]
    )
    return 0


def cmd_flower(settings: Settings, _args: argparse.Namespace) -> int:
    # Flower reads FLOWER_BASIC_AUTH from the environment itself, which keeps the password out
    # of the process list.
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--port={settings.flower_port}",
    ]
    os.execvp(argv[0], argv)


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in the foreground: API, relay, workers for every queue, Flower."""
    from app.api.keys import create_api_key
    from app.core.db import make_engine, migrate

    # Ctrl-C (SIGINT) and SIGTERM stop everything, even when dev was started by a shell that
    # runs background jobs with SIGINT ignored (which Python would otherwise keep ignoring).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    migrate(settings.database_url)
    engine = make_engine(settings, pool_size=1)
    issued = create_api_key(engine, "dev", SCOPES)
    engine.dispose()
    me = [sys.executable, "-m", "app.cli"]
    # Humans read dev's output: text logs unless LOG_FORMAT says otherwise. WebSocket tokens
    # and unsubscribe links are signed with secrets made for this run (unless given), shared by
    # the API and worker processes.
    child_env = {
        **os.environ,
        "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"),
        "WS_TOKEN_SECRET": settings.ws_token_secret or secrets.token_urlsafe(32),
        "UNSUBSCRIBE_SECRET": settings.unsubscribe_secret or secrets.token_urlsafe(32),
    }
    commands = {
        "api": [*me, "api", "--host", args.host, "--port", str(args.port)],
        "relay": [*me, "relay"],
        "worker": [*me, "worker", "--queues", ALL_QUEUES],
        "flower": [*me, "flower"],
    }
    children = {name: subprocess.Popen(cmd, env=child_env) for name, cmd in commands.items()}
    shown_host = "localhost" if args.host == "0.0.0.0" else args.host
    print(
        f"\nNotification service running:\n"
        f"  API     http://{shown_host}:{args.port}/api/v1\n"
        f"  Flower  http://localhost:{settings.flower_port}\n"
        f"  API key {issued.key}\n"
        f"  Webhook signing secret {issued.webhook_secret}\n"
        f"  Inbox   http://{shown_host}:{args.port}/inbox#user=demo-user&key={issued.key}\n"
        f"          (in-app notifications of userId demo-user, live)\n"
        f"Ctrl-C stops everything.\n",
        flush=True,
    )
    status = 0
    try:
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping", file=sys.stderr)
                    status = 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    return status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="notification-service", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply migrations")
    key = sub.add_parser("create-api-key", help="issue an API key (printed on the last line)")
    key.add_argument("--name", required=True)
    key.add_argument(
        "--scopes",
        default=",".join(DEFAULT_SCOPES),
        help=f"comma-separated, of {','.join(SCOPES)} (default {','.join(DEFAULT_SCOPES)})",
    )
    key.add_argument(
        "--project",
        default=DEFAULT_PROJECT,
        help=f"the project (tenant) the key belongs to, created if new (default {DEFAULT_PROJECT})",
    )
    for name, help_text in (("api", "serve the HTTP API with gunicorn"), ("dev", "run everything")):
        serve = sub.add_parser(name, help=help_text)
        serve.add_argument("--host", default=None)
        serve.add_argument("--port", type=int, default=None)
    sub.add_parser("relay", help="run the outbox relay and sweeper")
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", default=ALL_QUEUES, help=f"comma-separated, of {ALL_QUEUES}")
    sub.add_parser("flower", help="run Flower, the Celery monitor")
    return p


COMMANDS = {
    "migrate": cmd_migrate,
    "create-api-key": cmd_create_api_key,
    "api": cmd_api,
    "relay": cmd_relay,
    "worker": cmd_worker,
    "flower": cmd_flower,
    "dev": cmd_dev,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings.from_env()
    if getattr(args, "host", None) is None and args.command in ("api", "dev"):
        args.host = settings.api_host
    if getattr(args, "port", None) is None and args.command in ("api", "dev"):
        args.port = settings.api_port
    configure_logging(settings)
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
