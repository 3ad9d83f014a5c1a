"""The WebSocket close codes of the README's table not covered in test_inapp_live.py: 4400 for
a first message that is not an auth message, 4408 for no auth in time, 1011 when Redis does not
confirm the socket's subscription."""

from __future__ import annotations

import json
import time

from app.api.live import tokens
from tests.conftest import WS_TOKEN_SECRET
from tests.helpers.inbox import Tab, call
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

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
