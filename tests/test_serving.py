"""The API's gunicorn worker (gevent, app/cli.py): kept-alive connections answer request after
request, a busy client never starves a newcomer, and a request waiting on PostgreSQL does not
stop its process answering others. Each test runs one worker process, so a blocked event loop
shows as a request that is never answered."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text

from tests.helpers.db import wait_for_lock_waiter
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

LIVE = "/api/v1/health/live"


@pytest.fixture
def port(processes: Processes) -> int:
    port = free_port()
    # No lock deadline: one test holds a request on a lock for as long as it needs, however
    # slow the machine (DATABASE_LOCK_TIMEOUT_MS would otherwise end the wait with a 503).
    processes.api(port, API_WORKERS="1", DATABASE_LOCK_TIMEOUT_MS="0")
    return port


def _get(connection: http.client.HTTPConnection, path: str = LIVE, **headers: str) -> int:
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def test_one_kept_alive_connection_answers_request_after_request(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    statuses = [_get(connection) for _ in range(30)]
    local_port = connection.sock.getsockname()[1]

    assert statuses == [200] * 30
    assert _get(connection) == 200 and connection.sock.getsockname()[1] == local_port
    connection.close()


def test_busy_kept_alive_clients_do_not_starve_a_new_connection(port: int) -> None:
    answered = threading.Event()
    deadline = time.monotonic() + 20
    sent = [0, 0]

    def hammer(index: int) -> None:
        # Each asks again the moment it is answered: a thread holding the connection for its
        # next request would never let go of it.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not answered.is_set() and time.monotonic() < deadline:
            assert _get(connection) == 200
            sent[index] += 1
        connection.close()

    # Futures, not bare threads: what fails in a client's thread is raised here by result().
    with ThreadPoolExecutor(2) as pool:
        clients = [pool.submit(hammer, i) for i in range(2)]
        while min(sent) < 20 and time.monotonic() < deadline and not any(c.done() for c in clients):
            time.sleep(0.01)
        newcomer = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        status = _get(newcomer)
        answered_at = time.monotonic()
        answered.set()
        for client in clients:
            client.result(timeout=10)
    newcomer.close()

    assert status == 200
    assert min(sent) >= 20, "the busy clients were not both being answered"
    assert answered_at < deadline, "the new connection was answered only once the others stopped"


def test_a_request_waiting_on_postgresql_does_not_hold_up_the_process(
    port: int, engine: Engine, api_key: str
) -> None:
    # The pool is left last: the lock is released before it waits for the waiting request.
    with ThreadPoolExecutor(1) as pool, engine.connect() as holder:
        # The key is not cached yet, so the request looks it up, and waits for this lock.
        holder.execute(text("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE"))
        waiting = pool.submit(
            _get,
            http.client.HTTPConnection("127.0.0.1", port, timeout=30),
            "/api/v1/notifications",
            Authorization=f"Bearer {api_key}",
        )
        wait_for_lock_waiter(engine)

        started = time.monotonic()
        status = _get(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
        took = time.monotonic() - started
        assert not waiting.done()  # still waiting on PostgreSQL
        holder.rollback()
        waited_status = waiting.result(timeout=30)

    assert status == 200 and took < 2
    assert waited_status == 200
