"""The console script and the processes it starts, run the way an operator runs them."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from app.core.settings import Settings
from tests.helpers.api import SEED, post
from tests.helpers.db import status_counts
from tests.helpers.inbox import Tab, call, in_app
from tests.helpers.net import free_port
from tests.helpers.processes import BIN, Processes, run_cli, settings_env, wait_for


def test_create_api_key_prints_a_working_key_on_its_last_line(
    settings: Settings, client: FlaskClient, engine: Engine
) -> None:
    result = run_cli(settings, "create-api-key", "--name", "ops")

    key = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0
    response = client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT name FROM api_key")) == "ops"


def test_migrate_creates_a_missing_database_and_is_idempotent(
    settings: Settings, engine: Engine
) -> None:
    fresh = replace(settings, database_url=settings.database_url + "_migrate_check")
    name = make_url(fresh.database_url).database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))

    first, second = run_cli(fresh, "migrate"), run_cli(fresh, "migrate")

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_plain_celery_worker_command_delivers(
    client: FlaskClient, auth: dict[str, str], processes: Processes, engine: Engine
) -> None:
    processes.relay()
    processes.spawn(
        "celery",
        [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "email", "--pool=threads", "-c", "2"],
        settings_env(processes.settings),
        ready=" ready.",
    )

    post(client, auth, SEED)

    wait_for(lambda: status_counts(engine) == {"SENT": 1}, what="sent by `celery -A tasks`")


def flower_get(port: int, path: str) -> object | None:
    credentials = base64.b64encode(b"ops:s3cret").decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Basic {credentials}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def test_flower_starts_and_lists_the_channel_queues(processes: Processes) -> None:
    port = free_port()
    processes.worker(queues="email,sms")
    processes.spawn(
        "flower",
        [str(BIN / "notification-service"), "flower"],
        settings_env(processes.settings, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:s3cret"),
        ready=None,
    )
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"

    def queues() -> list[str] | None:
        workers = flower_get(port, "/api/workers?refresh=1")
        if not isinstance(workers, dict):
            return None
        names = [q["name"] for w in workers.values() for q in w.get("active_queues", [])]
        return sorted(names) or None

    assert wait_for(queues, timeout=40, interval=0.5, what="Flower's worker list") == [
        "email",
        "sms",
    ]
    try:
        urllib.request.urlopen(url, timeout=5)
        raise AssertionError("Flower answered without credentials")
    except urllib.error.HTTPError as refused:
        assert refused.code == 401


def test_flower_shows_the_relays_batched_tasks_run_by_a_stock_celery_worker(
    client: FlaskClient, auth: dict[str, str], processes: Processes, engine: Engine
) -> None:
    port = free_port()
    processes.spawn(
        "celery",
        [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "email", "--pool=threads", "-c", "2"],
        settings_env(processes.settings),
        ready=" ready.",
    )
    processes.spawn(
        "flower",
        [str(BIN / "notification-service"), "flower"],
        settings_env(processes.settings, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:s3cret"),
        ready=None,
    )
    wait_for(lambda: flower_get(port, "/api/workers?refresh=1"), timeout=40, what="Flower up")
    processes.relay()

    def succeeded() -> dict[str, str]:
        """Flower's task view: each succeeded notifications.deliver task's args."""
        tasks = flower_get(port, "/api/tasks") or {}
        assert isinstance(tasks, dict)
        return {
            task_id: task["args"]
            for task_id, task in tasks.items()
            if task["name"] == "notifications.deliver" and task["state"] == "SUCCESS"
        }

    # Workers report task events only once Flower has switched them on (at its start and every
    # 5 s); wait for the first task Flower sees, then check the ones sent after it.
    def probe() -> dict[str, str] | None:
        post(client, auth, SEED)
        return succeeded() or None

    wait_for(probe, timeout=30, interval=1, what="Flower's first task")
    before = set(succeeded())
    ids = [post(client, auth, SEED).get_json()["id"] for _ in range(3)]
    with engine.connect() as conn:
        deliveries = [
            str(d)
            for d in conn.scalars(
                text("SELECT id FROM delivery WHERE CAST(notification_id AS text) = ANY(:ids)"),
                {"ids": ids},
            )
        ]

    def shown() -> list[str] | None:
        args = " ".join(a for t, a in succeeded().items() if t not in before)
        missing = [d for d in deliveries if d not in args]
        return None if missing else deliveries

    assert wait_for(shown, timeout=30, interval=0.5, what="the tasks in Flower") == deliveries
    assert status_counts(engine).get("SENT", 0) >= 4


def test_dev_runs_everything_and_ctrl_c_stops_it(settings: Settings, tmp_path: Path) -> None:
    port, flower_port = free_port(), free_port()
    log = (tmp_path / "dev.log").open("w+")
    dev = subprocess.Popen(
        [str(BIN / "notification-service"), "dev", "--host", "127.0.0.1", "--port", str(port)],
        env=settings_env(settings, FLOWER_PORT=str(flower_port), EMAIL_PROVIDER="log"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its children too can be killed if it does not stop
    )
    try:
        banner = wait_for(
            lambda: re.search(r"API key (nsk_\S+)", Path(log.name).read_text()), timeout=30
        )
        key = banner.group(1)  # type: ignore[union-attr]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/notifications",
            data=json.dumps(SEED).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )

        def accepted() -> dict | None:
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    return json.load(r)
            except OSError:
                return None

        created = wait_for(accepted, timeout=30, interval=0.5, what="the API")

        def status() -> str | None:
            get = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/notifications/{created['id']}",  # type: ignore[index]
                headers={"Authorization": f"Bearer {key}"},
            )
            with urllib.request.urlopen(get, timeout=5) as r:
                return json.load(r)["deliveries"][0]["status"] == "SENT" or None

        wait_for(status, timeout=30, interval=0.2, what="EMAIL: SENT")
        assert f"http://127.0.0.1:{port}/api/v1" in Path(log.name).read_text()
        # The README's in-app demo: the printed inbox link's user gets an IN_APP post live.
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/inbox#user=demo-user&key={key}" in Path(log.name).read_text()
        tab = Tab.open(base, key, "demo-user")
        call("POST", f"{base}/api/v1/notifications", key, in_app("demo-user", "Hello"))
        assert tab.next()["item"]["body"] == "Hello"
        tab.close()
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            code = dev.wait(30)
        finally:
            if dev.poll() is None:  # a failed stop must not leave a relay and workers behind
                os.killpg(dev.pid, signal.SIGKILL)
    assert code == 0
    assert "notifications.delivered" in Path(log.name).read_text()
