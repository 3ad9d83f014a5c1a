"""A test's view of the in-app channel: HTTP calls to a running API and WebSocket "tabs"."""

from __future__ import annotations

import json
import time
from typing import Any

from simple_websocket import Client, ConnectionClosed

from tests.helpers.api import http
from tests.helpers.processes import wait_for


def call(method: str, url: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON body or None) of one HTTP request; errors are answers too."""
    status, _, answer = http(method, url, key, body)
    return status, answer


def in_app(user_id: str, body: str, **fields: Any) -> dict[str, Any]:
    return {"channels": ["IN_APP"], "userId": user_id, "body": body, **fields}


class Tab:
    """One browser tab's socket: connects, authenticates, and reads what the server sends."""

    def __init__(self, base: str, token: str | None, cursor: str | None = None) -> None:
        self.ws = Client.connect(base.replace("http://", "ws://") + "/ws/notifications")
        auth: dict[str, Any] = {"type": "auth", "token": token}
        if cursor is not None:
            auth["cursor"] = cursor
        self.ws.send(json.dumps(auth))

    @classmethod
    def unauthenticated(cls, base: str) -> Tab:
        """A socket that has sent nothing yet: the test chooses its first message, or none."""
        tab = cls.__new__(cls)
        tab.ws = Client.connect(base.replace("http://", "ws://") + "/ws/notifications")
        return tab

    @classmethod
    def open(cls, base: str, key: str, user_id: str, cursor: str | None = None) -> Tab:
        """A tab of ``user_id`` with a fresh token, once its backlog was sent (``ready``)."""
        status, token = call("POST", f"{base}/api/v1/users/{user_id}/ws-token", key)
        assert status == 201, token
        tab = cls(base, token["token"], cursor)
        tab.backlog = tab.until_ready()
        return tab

    backlog: list[dict[str, Any]]
    ready: dict[str, Any]

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = self.ws.receive(timeout=timeout)
        if raw is None:
            raise AssertionError(f"nothing received within {timeout}s")
        return json.loads(raw)

    def nothing_within(self, seconds: float) -> bool:
        return self.ws.receive(timeout=seconds) is None

    def until_ready(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The item messages before ``ready`` (kept in ``self.ready``)."""
        items = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.1, deadline - time.monotonic()))
            if message["type"] == "ready":
                self.ready = message
                return items
            assert message["type"] == "item", message
            items.append(message)

    def closed_with(self, timeout: float = 10.0) -> tuple[int, str]:
        """The close code and reason the server closed this socket with."""

        def closed() -> tuple[int, str] | None:
            try:
                self.ws.receive(timeout=0.1)
            except ConnectionClosed as closed:
                return int(closed.reason), str(closed.message or "")
            return None

        return wait_for(closed, timeout, 0.0, "the server to close the socket")  # type: ignore[return-value]

    def close(self) -> None:
        try:
            self.ws.close()
        except ConnectionClosed:
            pass
