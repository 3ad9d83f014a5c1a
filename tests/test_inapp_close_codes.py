"""The WebSocket close codes of the README's table not covered in test_inapp_live.py: 4400 for
a first message that is not an auth message, 4408 for no auth in time, 1011 when Redis does not
confirm the socket's subscription or when the process loses PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.api.live import tokens
from app.core.settings import Settings
from tests.conftest import WS_TOKEN_SECRET
from tests.helpers.factories import make_api_key
from tests.helpers.inbox import Tab, call
from tests.helpers.net import free_port
from tests.helpers.processes import Processes
from tests.standins.tarpit import Tarpit

NOT_AUTH = (4400, "first message must be {type: auth, token}")


def start_api(processes: Processes, **env: str) -> str:
    port = free_port()
    processes.api(port, API_WORKERS="1", **env)
    return f"http://127.0.0.1:{port}"


def test_a_first_message_that_is_not_an_auth_message_is_closed_with_4400(
    processes: Processes,
) -> None:
    api = start_api(processes)
    token = tokens.issue(WS_TOKEN_SECRET, "default", "ivy", 60).value
    first_messages = {
        "ping": {"type": "ping"},
        "read-all": {"type": "read-all"},
        "a token without type": {"token": token},
        "another type with a valid token": {"type": "Auth", "token": token},
        "a JSON array": [{"type": "auth", "token": token}],
    }

    closed = {}
    for name, first in first_messages.items():
        tab = Tab.unauthenticated(api)
        tab.ws.send(json.dumps(first))
        closed[name] = tab.closed_with()
    not_json = Tab.unauthenticated(api)
    not_json.ws.send("auth " + token)

    assert closed == dict.fromkeys(first_messages, NOT_AUTH)
    assert not_json.closed_with() == NOT_AUTH


def test_a_socket_that_sends_no_auth_message_within_10_seconds_is_closed_with_4408(
    processes: Processes,
) -> None:
    api = start_api(processes)
    silent = Tab.unauthenticated(api)
    opened = time.monotonic()

    closed = silent.closed_with(timeout=20)

    waited = time.monotonic() - opened
    assert closed == (4408, "no auth message in time")
    assert 9.5 <= waited < 15, waited


def test_a_socket_whose_subscription_redis_does_not_confirm_is_closed_with_1011(
    processes: Processes,
) -> None:
    # Nothing listens on this Redis port: the hub's listener cannot subscribe.
    api = start_api(processes, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    tab = Tab(api, tokens.issue(WS_TOKEN_SECRET, "default", "ivy", 60).value)

    closed = tab.closed_with(timeout=20)

    assert closed == (1011, "live delivery unavailable; retry")
    assert call("GET", f"{api}/api/v1/health/live", None)[0] == 200


@pytest.fixture
def postgres_proxy(database_url: str) -> Iterator[Tarpit]:
    """PostgreSQL reached through a proxy the test can make hang (tests/standins/tarpit.py)."""
    url = make_url(database_url)
    proxy = Tarpit((url.host or "127.0.0.1", url.port or 5432)).start()
    proxy.forward()
    yield proxy
    proxy.stop()


def test_a_socket_whose_process_loses_postgresql_is_closed_with_1011_and_one_warning(
    processes: Processes, settings: Settings, engine: Engine, postgres_proxy: Tarpit
) -> None:
    through = make_url(settings.database_url).set(port=postgres_proxy.port)
    api = start_api(
        processes,
        DATABASE_URL=through.render_as_string(hide_password=False),
        # A short statement deadline, so the hung database is noticed in seconds.
        DATABASE_STATEMENT_TIMEOUT_MS="1000",
    )
    key = make_api_key(engine).key
    marking = Tab.open(api, key, "ivy")  # authenticated: its backlog came through the proxy
    assert marking.ready["unreadCount"] == 0

    postgres_proxy.hang()
    # One socket's mark runs into the hung database; another authenticates meanwhile, and its
    # catch-up query does.
    marking.ws.send(json.dumps({"type": "read-all"}))
    catching_up = Tab(api, tokens.issue(WS_TOKEN_SECRET, "default", "ivy", 60).value)

    lost = (1011, "database unavailable; retry")
    assert marking.closed_with(timeout=15) == lost
    assert catching_up.closed_with(timeout=15) == lost
    log = processes.started[-1].log()
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if "socket closed: database unavailable" in line]
    assert len(warnings) == 2, warnings
    assert all('"level": "WARNING"' in line for line in warnings), warnings
