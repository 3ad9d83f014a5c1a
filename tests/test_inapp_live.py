"""IN_APP live: real gunicorn API processes, relay and worker; sockets as a browser opens them."""

from __future__ import annotations

import json
import signal
import socket
import time
from typing import Any

import redis
import wsproto
from sqlalchemy import Engine, text
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from app.api.live import tokens
from app.api.live.hub import CLIENT_NAME, MAILBOX_LIMIT
from app.api.live.websocket import MAX_MESSAGE_BYTES
from app.core.inbox_events import deleted_event, inbox_of, user_channel
from app.core.settings import Settings
from app.store.inbox import encode_cursor
from tasks.deliver import WorkerContext, deliver_ids
from tests.conftest import WS_TOKEN_SECRET
from tests.helpers.inbox import Tab, call, in_app
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, wait_for


def start(processes: Processes, apis: int = 1, **api_env: str) -> list[str]:
    """Relay, one IN_APP worker, and ``apis`` separate API processes; their base URLs."""
    processes.relay()
    processes.worker(queues="inapp")
    ports = [free_port() for _ in range(apis)]
    for port in ports:
        processes.api(port, API_WORKERS="1", **api_env)
    return [f"http://127.0.0.1:{port}" for port in ports]


def post(base: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = call("POST", f"{base}/api/v1/notifications", key, body)
    assert status == 202, created
    return created


def delivery(base: str, key: str, notification_id: str) -> dict[str, Any]:
    _, found = call("GET", f"{base}/api/v1/notifications/{notification_id}", key)
    return found["deliveries"][0]


def sent(base: str, key: str, notification_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = delivery(base, key, notification_id)
        return found if found["status"] == "SENT" else None

    return wait_for(done, 30, 0.1, "IN_APP delivery SENT")  # type: ignore[return-value]


def test_item_posted_to_api_b_reaches_every_tab_of_the_user_including_those_on_api_a(
    processes: Processes, api_key: str
) -> None:
    a, b = start(processes, apis=2)
    tab_on_a = Tab.open(a, api_key, "ana")
    second_tab_on_a = Tab.open(a, api_key, "ana")
    tab_on_b = Tab.open(b, api_key, "ana")

    created = post(
        b,
        api_key,
        in_app("ana", "Your order shipped", subject="Shipped", data={"order": 1234}),
    )

    received = [tab.next() for tab in (tab_on_a, second_tab_on_a, tab_on_b)]
    for message in received:
        assert message["type"] == "item"
        assert message["unreadCount"] == 1
        item = message["item"]
        assert (item["title"], item["body"], item["data"]) == (
            "Shipped",
            "Your order shipped",
            {"order": 1234},
        )
        assert item["category"] == "TRANSACTIONAL" and item["readAt"] is None
        assert item["notificationId"] == created["id"]
    assert len({m["item"]["id"] for m in received}) == 1
    # Two API processes held a socket of ana when the worker published.
    item_id = received[0]["item"]["id"]
    assert sent(b, api_key, created["id"])["providerMessageId"] == f"inbox:{item_id}:live:2"


def test_item_for_an_offline_user_is_sent_with_live_0_and_arrives_when_a_socket_connects(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)

    created = post(api, api_key, in_app("offline-olga", "While you were away"))
    done = sent(api, api_key, created["id"])
    tab = Tab.open(api, api_key, "offline-olga")

    assert done["providerMessageId"].endswith(":live:0")
    assert [m["item"]["body"] for m in tab.backlog] == ["While you were away"]
    assert tab.ready["unreadCount"] == 1


def test_reconnect_with_a_cursor_receives_only_the_missed_items_once(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    tab = Tab.open(api, api_key, "rui")
    post(api, api_key, in_app("rui", "one"))
    first = tab.next()
    tab.close()

    missed = [post(api, api_key, in_app("rui", body)) for body in ("two", "three")]
    for created in missed:
        sent(api, api_key, created["id"])
    again = Tab.open(api, api_key, "rui", cursor=first["item"]["cursor"])
    post(api, api_key, in_app("rui", "four"))
    live = again.next()

    assert [m["item"]["body"] for m in again.backlog] == ["two", "three"]
    assert again.ready["unreadCount"] == 3
    assert again.ready["cursor"] == again.backlog[-1]["item"]["cursor"]
    assert live["item"]["body"] == "four" and live["unreadCount"] == 4
    assert again.nothing_within(1.0)


def test_wrong_expired_or_missing_tokens_are_closed_with_4401_and_bad_first_messages_with_4400(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    valid = tokens.issue(WS_TOKEN_SECRET, "default", "eve", 60).value
    payload, signature = valid.split(".")[1:]
    refused = {
        "forged": tokens.issue("another-secret-of-at-least-32-chars!!", "default", "eve", 60).value,
        "tampered": f"v1.{tokens.issue(WS_TOKEN_SECRET, 'default', 'bob', 60).value.split('.')[1]}"
        f".{signature}",
        "expired": tokens.issue(
            WS_TOKEN_SECRET, "default", "eve", 60, now=time.time() - 3600
        ).value,
        "garbage": "not-a-token",
        "missing": None,
    }

    outcomes = {name: Tab(api, token).closed_with() for name, token in refused.items()}
    bad_cursor = Tab(api, valid, cursor="bm90LWEtY3Vyc29y").closed_with()

    assert outcomes == {
        "forged": (4401, "invalid token"),
        "tampered": (4401, "invalid token"),
        "expired": (4401, "token expired"),
        "garbage": (4401, "invalid token"),
        "missing": (4401, "invalid token"),
    }
    assert bad_cursor == (4400, "invalid cursor")
    assert payload not in json.dumps(outcomes)
    assert tokens.verify(WS_TOKEN_SECRET, valid) == ("default", "eve")
    api_log = next(p for p in processes.started if p.name.startswith("api")).log()
    assert "/ws/notifications" in api_log
    for secret in (WS_TOKEN_SECRET, payload, signature, *filter(None, refused.values())):
        assert secret not in api_log


def test_a_token_for_one_user_never_receives_another_users_items(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    xavier = Tab.open(api, api_key, "xavier")
    yara = Tab.open(api, api_key, "yara")

    post(api, api_key, in_app("yara", "for yara only"))
    assert yara.next()["item"]["body"] == "for yara only"
    post(api, api_key, in_app("xavier", "for xavier"))

    # Xavier's next message is his own item: yara's, sent before it, never reached him.
    assert xavier.next()["item"]["body"] == "for xavier"
    assert yara.nothing_within(0.5)
    rejoined = Tab.open(api, api_key, "xavier")
    assert [m["item"]["body"] for m in rejoined.backlog] == ["for xavier"]


def test_read_over_rest_reaches_the_socket_and_read_over_the_socket_reaches_rest(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    tab = Tab.open(api, api_key, "mia")
    other_tab = Tab.open(api, api_key, "mia")
    for body in ("first", "second"):
        post(api, api_key, in_app("mia", body))
    first, second = tab.next()["item"], tab.next()["item"]
    other_tab.next(), other_tab.next()
    inbox = f"{api}/api/v1/users/mia/inbox"

    status, marked = call("POST", f"{inbox}/{first['id']}/read", api_key)
    # Checked before waiting on the socket: a refused mark publishes nothing, and would
    # otherwise show only as "nothing received" instead of its own answer.
    assert status == 200 and marked["readAt"] is not None, marked
    over_socket = tab.next()

    assert over_socket == {"type": "read", "ids": [first["id"]], "unreadCount": 1}

    tab.ws.send(json.dumps({"type": "read", "ids": [second["id"]]}))
    echoed, seen_by_other_tab = tab.next(), other_tab.next()
    other_tab.next()  # the REST mark, before this one

    assert echoed == {"type": "read", "ids": [second["id"]], "unreadCount": 0}
    assert seen_by_other_tab["type"] == "read"
    _, page = call("GET", f"{inbox}?unread=true", api_key)
    assert page["items"] == [] and page["unreadCount"] == 0
    _, everything = call("GET", inbox, api_key)
    assert all(item["readAt"] for item in everything["items"])


def test_bad_socket_messages_are_answered_with_an_error_and_the_socket_stays_open(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    tab = Tab.open(api, api_key, "zoe")

    replies = []
    for raw in ("{not json", '{"type": "read", "ids": ["nope"]}', '{"type": "dance"}'):
        tab.ws.send(raw)
        replies.append(tab.next())
    tab.ws.send('{"type": "ping"}')

    assert [(r["type"], r["code"]) for r in replies] == [
        ("error", "malformed_json"),
        ("error", "validation_failed"),
        ("error", "unknown_type"),
    ]
    assert replies[1]["fields"][0]["field"] == "ids"
    assert tab.next() == {"type": "pong"}


def test_server_pings_and_drops_a_client_that_stops_answering(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes, WS_PING_INTERVAL_SECONDS="0.5")
    port = int(api.rsplit(":", 1)[1])
    _, token = call("POST", f"{api}/api/v1/users/dan/ws-token", api_key)
    # A raw client that answers pings until it is live, then goes silent, as a client does
    # whose network vanished.
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(connection.send(Request(host="127.0.0.1", target="/ws/notifications")))
    events: list[object] = []
    live_at = went_silent = None
    while not any(isinstance(e, CloseConnection) for e in events):
        data = raw.recv(65536)
        if not data:
            break
        connection.receive_data(data)
        for event in connection.events():
            events.append(event)
            if isinstance(event, AcceptConnection):
                auth = {"type": "auth", "token": token["token"]}
                raw.sendall(connection.send(TextMessage(json.dumps(auth))))
            elif isinstance(event, TextMessage) and '"ready"' in event.data:
                live_at, went_silent = time.monotonic(), len(events)
            elif isinstance(event, Ping) and live_at is None:
                raw.sendall(connection.send(event.response()))
    raw.close()

    assert live_at is not None and went_silent is not None, events
    assert any(isinstance(e, Ping) for e in events[went_silent:]), "no ping after going silent"
    [close] = [e for e in events if isinstance(e, CloseConnection)]
    assert time.monotonic() - live_at < 5
    assert close.code == 1008


def test_every_item_delivered_once_even_when_the_task_runs_twice(
    processes: Processes, api_key: str, engine: Engine
) -> None:
    (api,) = start(processes)
    created = post(api, api_key, in_app("ivy", "just once"))
    sent(api, api_key, created["id"])
    with engine.begin() as conn:
        delivery_id = conn.scalar(text("SELECT id FROM delivery"))
        # As if the worker had died after storing and before recording: the sweeper re-drives.
        conn.execute(
            text(
                "UPDATE delivery SET status = 'RETRYING', updated_at = now() - interval '1 hour'"
                " WHERE id = :id"
            ),
            {"id": delivery_id},
        )
    processes.relay(SWEEPER_LEASE_SECONDS="1")

    wait_for(lambda: delivery(api, api_key, created["id"])["attempts"] == 2, what="re-driven")
    sent(api, api_key, created["id"])
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM inbox_item")) == 1


def test_sockets_past_ws_max_connections_are_refused_with_1013_and_http_still_answers(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes, WS_MAX_CONNECTIONS="1")
    first = Tab.open(api, api_key, "cap")
    _, token = call("POST", f"{api}/api/v1/users/cap/ws-token", api_key)

    refused = Tab(api, token["token"]).closed_with()
    status, _ = call("GET", f"{api}/api/v1/users/cap/inbox", api_key)

    assert refused == (1013, "server at capacity; retry")
    assert status == 200
    first.ws.send('{"type": "ping"}')
    assert first.next() == {"type": "pong"}


def test_a_user_past_ws_max_connections_per_user_is_refused_with_4409_others_are_not(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes, WS_MAX_CONNECTIONS_PER_USER="2")
    tabs = [Tab.open(api, api_key, "many") for _ in range(2)]
    _, token = call("POST", f"{api}/api/v1/users/many/ws-token", api_key)

    refused = Tab(api, token["token"]).closed_with()
    other = Tab.open(api, api_key, "someone-else")

    assert refused == (4409, "too many open sockets for this user")
    for tab in (*tabs, other):
        tab.ws.send('{"type": "ping"}')
        assert tab.next() == {"type": "pong"}


def test_a_message_over_the_size_limit_closes_that_socket_with_1009(
    processes: Processes, api_key: str
) -> None:
    (api,) = start(processes)
    tab = Tab.open(api, api_key, "big")

    tab.ws.send(json.dumps({"type": "read", "ids": ["x" * (MAX_MESSAGE_BYTES + 1)]}))

    assert tab.closed_with()[0] == 1009
    again = Tab.open(api, api_key, "big")  # the user may reconnect
    again.ws.send('{"type": "ping"}')
    assert again.next() == {"type": "pong"}


def test_a_client_too_slow_to_read_its_events_is_closed_with_4429(
    processes: Processes, api_key: str, redis_client: Any
) -> None:
    (api,) = start(processes)
    _, token = call("POST", f"{api}/api/v1/users/slow/ws-token", api_key)
    host, port = api.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=host, target="/ws/notifications")))
    events = _ws_events(sock, ws, until=lambda e: isinstance(e, AcceptConnection))
    sock.sendall(ws.send(TextMessage(data=json.dumps({"type": "auth", "token": token["token"]}))))
    _ws_events(sock, ws, until=lambda e: isinstance(e, TextMessage) and '"ready"' in e.data)

    # The client stops reading; far more events than a socket may queue arrive meanwhile.
    pipe = redis_client.pipeline(transaction=False)
    for n in range(MAILBOX_LIMIT * 3):
        pipe.publish(
            user_channel(redis_client, inbox_of("default", "slow")),
            json.dumps(deleted_event([f"{n:08d}" * 1000], 0)),
        )
    pipe.execute()
    time.sleep(1)

    events = _ws_events(sock, ws, until=lambda e: isinstance(e, CloseConnection), timeout=60)
    sock.close()
    assert events[-1].code == 4429
    assert "reconnect with your cursor" in events[-1].reason


def _ws_events(sock: socket.socket, ws: WSConnection, until: Any, timeout: float = 10) -> list[Any]:
    """Read from a raw socket until an event satisfies ``until``; every event read."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.receive_data(sock.recv(65536) or None)
        for event in ws.events():
            seen.append(event)
            if until(event):
                return seen
    raise AssertionError(f"no such event within {timeout}s; last: {seen[-1:]}")


def test_stopping_an_api_process_closes_its_sockets_with_1001_at_once(
    processes: Processes, api_key: str
) -> None:
    processes.relay()
    port = free_port()
    api = processes.api(port, API_WORKERS="1")
    tab = Tab.open(f"http://127.0.0.1:{port}", api_key, "sam")

    stopped = time.monotonic()
    api.popen.send_signal(signal.SIGTERM)
    closed = tab.closed_with(timeout=5)
    api.popen.wait(10)

    assert closed == (1001, "server shutting down")
    assert time.monotonic() - stopped < 5, "the worker did not wait out its graceful timeout"


def test_a_socket_catches_up_from_the_database_when_its_process_loses_redis(
    processes: Processes,
    api_key: str,
    settings: Settings,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    port = free_port()
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"
    tab = Tab.open(api, api_key, "lou")
    created = post(api, api_key, in_app("lou", "sent while the listener was away"))

    # Cut the listener's pub/sub connection, then deliver at once: the publish finds no one.
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    [hub] = [
        c
        for c in redis_client.client_list()
        if c["name"] == CLIENT_NAME and c["db"] == db and int(c["sub"]) > 0
    ]
    redis_client.client_kill_filter(_id=hub["id"])
    context = WorkerContext.build(settings)
    try:
        deliver_ids(context, [created["deliveries"][0]["id"]])
    finally:
        context.close()
    missed_live = delivery(api, api_key, created["id"])["providerMessageId"]

    message = tab.next()
    assert missed_live.endswith(":live:0")
    assert (
        message["type"] == "item" and message["item"]["body"] == "sent while the listener was away"
    )
    assert tab.next()["type"] == "ready"
    assert tab.nothing_within(0.5)


def test_marks_missed_while_the_process_lost_redis_reach_the_socket_after(
    processes: Processes, api_key: str, redis_client: redis.Redis
) -> None:
    processes.relay()
    processes.worker(queues="inapp")
    port = free_port()
    processes.api(port, API_WORKERS="1")
    api = f"http://127.0.0.1:{port}"
    tab = Tab.open(api, api_key, "ivy")
    for body in ("first", "second"):
        post(api, api_key, in_app("ivy", body))
    first, second = tab.next()["item"], tab.next()["item"]

    # Cut the listener's pub/sub connection, then mark one item read and delete the other at
    # once: the publishes find no one, and the socket's catch-up must carry both marks.
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    [hub] = [
        c
        for c in redis_client.client_list()
        if c["name"] == CLIENT_NAME and c["db"] == db and int(c["sub"]) > 0
    ]
    redis_client.client_kill_filter(_id=hub["id"])
    read, _ = call("POST", f"{api}/api/v1/users/ivy/inbox/{first['id']}/read", api_key)
    deleted, _ = call("DELETE", f"{api}/api/v1/users/ivy/inbox/{second['id']}", api_key)
    assert (read, deleted) == (200, 204)

    assert tab.next() == {"type": "read", "ids": [first["id"]], "unreadCount": 0}
    assert tab.next() == {"type": "deleted", "ids": [second["id"]], "unreadCount": 0}
    assert tab.next() == {"type": "ready", "unreadCount": 0, "cursor": second["cursor"]}


def test_items_published_out_of_position_order_both_reach_the_socket(
    processes: Processes, api_key: str, redis_client: redis.Redis
) -> None:
    # Two workers each publish after their own commit, so a user's items can arrive in the
    # opposite order of their positions: the later-published, lower one is no repeat.
    port = free_port()
    processes.api(port, API_WORKERS="1")
    tab = Tab.open(f"http://127.0.0.1:{port}", api_key, "olga")
    channel = user_channel(redis_client, inbox_of("default", "olga"))

    def item(position: int) -> bytes:
        view = {
            "id": f"00000000-0000-4000-8000-{position:012d}",
            "notificationId": "00000000-0000-4000-8000-000000000000",
            "category": "TRANSACTIONAL",
            "title": None,
            "body": f"position {position}",
            "data": None,
            "createdAt": "2026-12-04T00:00:00+00:00",
            "readAt": None,
            "cursor": encode_cursor(position),
        }
        return json.dumps({"type": "item", "item": view, "unreadCount": 2}).encode()

    assert redis_client.publish(channel, item(900002)) == 1
    assert redis_client.publish(channel, item(900001)) == 1
    assert redis_client.publish(channel, item(900002)) == 1  # a repeat is still dropped

    bodies = [tab.next()["item"]["body"] for _ in range(2)]
    assert bodies == ["position 900002", "position 900001"]
    assert tab.nothing_within(0.5)
