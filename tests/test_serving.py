"""The API's gunicorn worker (app/serving.py): a thread stays on a busy kept-alive connection,
but never so that an idle client or a busy one keeps another connection waiting. Each test runs
one worker with two threads (one for HTTP, one for a WebSocket), so a thread held too long shows
as a request that is never answered."""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.netutil import free_port
from tests.processes import Processes

LIVE = "/api/v1/health/live"


@pytest.fixture
def port(processes: Processes) -> int:
    port = free_port()
    processes.api(port, API_WORKERS="1", API_THREADS="1", WS_MAX_CONNECTIONS="1")
    return port


def _get(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", LIVE)
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


def test_idle_kept_alive_connections_do_not_keep_the_threads(port: int) -> None:
    idle = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(4)]
    assert [_get(c) for c in idle] == [200] * 4  # each now idle, kept alive

    newcomer = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert _get(newcomer) == 200
    # Back on the poller, the idle connections are answered again when they speak.
    assert [_get(c) for c in reversed(idle)] == [200] * 4
    for connection in [*idle, newcomer]:
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

    clients = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    for client in clients:
        client.start()
    while min(sent) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    newcomer = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    status = _get(newcomer)
    answered_at = time.monotonic()
    answered.set()
    for client in clients:
        client.join(10)
    newcomer.close()

    assert status == 200
    assert min(sent) >= 20, "the busy clients were not both being answered"
    assert answered_at < deadline, "the new connection was answered only once the others stopped"
