"""A test's view of the in-app channel: HTTP calls to a running API and WebSocket "tabs"."""

from __future__ import annotations

import json
import socket
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


class RawSocket:
    """A WebSocket opened by hand, with a deadline on every step: for tests that open many
    sockets a server may not even accept (a simple-websocket client would wait forever)."""

    HANDSHAKE = (
        "GET /ws/notifications HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )

    def __init__(self, base: str, timeout: float) -> None:
        """Connects and upgrades; ``upgraded`` says whether the server answered 101 in time."""
        host = base.removeprefix("http://")
        address, _, port = host.partition(":")
        self.sock = socket.create_connection((address, int(port)), timeout=timeout)
        self._buffer = b""
        self.upgraded = False
        try:
            self.sock.sendall(self.HANDSHAKE.format(host=host).encode())
            while b"\r\n\r\n" not in self._buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                self._buffer += chunk
        except OSError:  # a timeout included: no answer in time
            return
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.upgraded = head.startswith(b"HTTP/1.1 101")

    def close_code(self, timeout: float) -> int | None:
        """The code of the close frame the server sends within ``timeout``; None if it sends
        none (the socket is still open). Frames before it (pings) are skipped."""
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = self._frame()
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big") if payload else 1005
        except OSError:
            return None

    def _frame(self) -> tuple[int, bytes]:
        header = self._read(2)
        length = header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return header[0] & 0x0F, self._read(length)  # a server's frames are not masked

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._buffer += chunk
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found

    def close(self) -> None:
        self.sock.close()
