"""What the real gunicorn process answers at its edges: a chunked body over the size limit is
413 whatever its framing, and gunicorn's own refusals are in the API's JSON error shape."""

from __future__ import annotations

import json
import socket

import pytest
from sqlalchemy import Engine, text

from app.api.keys import create_api_key
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

LIMIT = 4096


@pytest.fixture
def api(processes: Processes) -> int:
    port = free_port()
    processes.api(port, API_WORKERS="1", API_MAX_BODY_BYTES=str(LIMIT))
    return port


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as it is and read the answer until the server closes or it is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = conn.recv(65536)
            if not piece:
                break
            answer += piece
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("Content-Length", headers.get("content-length", "0")))
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece
    return int(lines[0].split()[1]), headers, body


def chunked(body: bytes, chunk: int) -> bytes:
    framed = b"".join(
        f"{len(body[i : i + chunk]):x}\r\n".encode() + body[i : i + chunk] + b"\r\n"
        for i in range(0, len(body), chunk)
    )
    return framed + b"0\r\n\r\n"


@pytest.mark.parametrize("chunk", [LIMIT * 4, 1000, 7])
def test_an_oversized_chunked_body_is_413_and_writes_nothing(
    api: int, engine: Engine, chunk: int
) -> None:
    key = create_api_key(engine, "edges").key
    body = json.dumps(
        {"channels": ["WEBHOOK"], "webhookUrl": "https://example.com/h", "body": "x" * LIMIT * 3}
    ).encode()
    request = (
        b"POST /api/v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + b"Connection: close\r\n\r\n"
        + chunked(body, chunk)
    )

    status, _, answer = exchange(api, request)

    assert status == 413, answer
    assert json.loads(answer)["error"]["code"] == "request_entity_too_large"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification")) == 0


def test_a_chunked_body_under_the_limit_is_accepted(api: int, engine: Engine) -> None:
    key = create_api_key(engine, "edges").key
    body = json.dumps(
        {"channels": ["WEBHOOK"], "webhookUrl": "https://example.com/h", "body": "small"}
    ).encode()
    request = (
        b"POST /api/v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + b"Connection: close\r\n\r\n"
        + chunked(body, 10)
    )

    status, _, answer = exchange(api, request)

    assert status == 202, answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    ],
    ids=["bad request line", "URI too long", "header too large", "too many headers"],
)
def test_gunicorn_refusals_answer_in_the_json_error_shape(
    api: int, raw: bytes, status: int
) -> None:
    got, headers, body = exchange(api, raw)

    assert got == status, body
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert error["code"] and error["message"] and error["fields"] == []
