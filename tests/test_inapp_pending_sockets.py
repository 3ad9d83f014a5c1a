"""Sockets that never authenticate cannot starve HTTP: until its ``auth`` message a socket
counts against WS_MAX_PENDING, a budget of its own, and the sockets past it are closed with
1013 at once, so unauthenticated clients hold neither HTTP's API_CONNECTIONS nor the
authenticated sockets' WS_MAX_CONNECTIONS."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from tests.helpers.api import SEED
from tests.helpers.factories import make_api_key
from tests.helpers.inbox import RawSocket, Tab, call
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, wait_for

HTTP_CONNECTIONS = 20
PENDING = 4


def open_raw(api: str, count: int) -> list[RawSocket]:
    """``count`` sockets opened at once, as a flood of clients would."""
    opened: list[RawSocket | None] = [None] * count

    def one(index: int) -> None:
        opened[index] = RawSocket(api, timeout=5)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert all(raw is not None for raw in opened)
    return [raw for raw in opened if raw is not None]


def timed(method: str, url: str, key: str | None, body: object = None) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = call(method, url, key, body)
    return status, time.monotonic() - started


def test_unauthenticated_sockets_past_their_budget_are_closed_1013_and_http_is_still_served(
    processes: Processes, engine: Engine
) -> None:
    port = free_port()
    processes.api(
        port,
        API_WORKERS="1",
        API_CONNECTIONS=str(HTTP_CONNECTIONS),
        WS_MAX_CONNECTIONS="5",
        WS_MAX_PENDING=str(PENDING),
    )
    api = f"http://127.0.0.1:{port}"
    key = make_api_key(engine).key

    # Twice as many silent sockets as HTTP has connections: without a budget of their own they
    # would hold every connection slot of the worker until their auth deadline (10 s).
    flood = open_raw(api, 2 * HTTP_CONNECTIONS)
    try:
        assert [raw.upgraded for raw in flood] == [True] * len(flood)
        codes = [raw.close_code(timeout=2.0) for raw in flood]
        assert sorted(codes, key=str) == [1013] * (len(flood) - PENDING) + [None] * PENDING

        # The budget's sockets are still open (and silent), and HTTP answers at once.
        health = timed("GET", f"{api}/api/v1/health", None)
        accepted = timed("POST", f"{api}/api/v1/notifications", key, SEED)
        assert (health[0], accepted[0]) == (200, 202)
        assert max(health[1], accepted[1]) < 2.0, (health, accepted)
        # One more silent socket is past the budget too.
        extra = RawSocket(api, timeout=5)
        assert extra.upgraded and extra.close_code(timeout=2.0) == 1013
    finally:
        for raw in flood:
            raw.close()

    # Sockets that go away free their place: a client that authenticates is served again.
    def tab_served() -> Tab | None:
        try:
            return Tab.open(api, key, "ivy")
        except Exception:  # refused (1013) while the flood's sockets are still going
            return None

    tab = wait_for(tab_served, timeout=10, interval=0.2, what="a socket served again")
    assert isinstance(tab, Tab)
    tab.close()
