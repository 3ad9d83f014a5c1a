"""Readiness: ``/api/v1/health/ready`` (and ``/api/v1/health``) answers 503 naming PostgreSQL
when the database cannot be reached, and 200 again once it can; liveness does not care."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy.engine import make_url

from app.api.factory import create_app
from app.core.settings import Settings
from tests.helpers.net import free_port

POSTGRES_DOWN = {"status": "unavailable", "checks": {"postgres": "unreachable", "redis": "ok"}}
ALL_OK = {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


class Forwarder:
    """A TCP listener on a port of its own that pipes each connection to PostgreSQL. ``stop``
    closes the listener and every connection through it, as when the database host goes away;
    ``start`` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Forwarder:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            doomed, self._sockets = [self._listener, *self._sockets], []
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() or recv()
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


@pytest.fixture
def forwarder(database_url: str) -> Iterator[Forwarder]:
    url = make_url(database_url)
    running = Forwarder((url.host or "127.0.0.1", url.port or 5432)).start()
    yield running
    running.stop()


def test_ready_is_503_naming_postgres_when_nothing_listens_on_its_port(
    settings: Settings,
) -> None:
    url = make_url(settings.database_url).set(port=free_port())
    app = create_app(replace(settings, database_url=url.render_as_string(hide_password=False)))
    client = app.test_client()

    ready, health, live = (client.get(f"/api/v1/health{p}") for p in ("/ready", "", "/live"))

    assert (ready.status_code, ready.get_json()) == (503, POSTGRES_DOWN)
    assert (health.status_code, health.get_json()) == (503, POSTGRES_DOWN)
    assert live.status_code == 200


def test_ready_turns_503_when_postgres_goes_away_and_200_when_it_is_back(
    settings: Settings, forwarder: Forwarder
) -> None:
    url = make_url(settings.database_url).set(port=forwarder.port)
    app = create_app(replace(settings, database_url=url.render_as_string(hide_password=False)))
    client = app.test_client()
    before = client.get("/api/v1/health/ready")

    forwarder.stop()  # the pooled connection dies and new ones are refused
    gone = [client.get("/api/v1/health/ready") for _ in range(2)]
    forwarder.start()
    back = client.get("/api/v1/health/ready")

    assert (before.status_code, before.get_json()) == (200, ALL_OK)
    assert [(r.status_code, r.get_json()) for r in gone] == [(503, POSTGRES_DOWN)] * 2
    assert (back.status_code, back.get_json()) == (200, ALL_OK)
