"""``/ws/notifications``: one user's inbox, live.

Protocol (JSON text messages; also in the README):

client → server
  ``{"type": "auth", "token": "<ws-token>", "cursor": "<optional>"}``  first, within 10 s
  ``{"type": "read", "ids": ["<item id>", ...]}``  mark items read
  ``{"type": "read-all"}``  mark every item read
  ``{"type": "ping"}``  answered with ``{"type": "pong"}``
server → client
  ``{"type": "item", "item": {...}, "unreadCount": n}``  an unread item (backlog or live)
  ``{"type": "ready", "unreadCount": n, "cursor": "<position>"}``  backlog sent; live from now
  ``{"type": "read", "ids": [...], "unreadCount": n}``  items were marked read (any tab, REST)
  ``{"type": "deleted", "ids": [...], "unreadCount": n}``  items were deleted
  ``{"type": "error", "code": "...", "message": "...", "fields": [...]}``  a message was refused

Close codes: 4400 bad first message or cursor, 4401 invalid or expired token, 4408 no auth in
time, 4409 the user already has WS_MAX_CONNECTIONS_PER_USER sockets on this process, 4429 client
too slow to read its events, 1013 this process holds all the sockets it may (WS_MAX_CONNECTIONS
authenticated ones, or WS_MAX_PENDING that have not sent their auth message yet),
1011 Redis or PostgreSQL unavailable (try again later; the process logs one warning, no
traceback), 1001 server shutting down, 1008 no pong to the server's ping.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from flask import Blueprint
from flask_sock import Sock
from pydantic import BaseModel, Field, ValidationError
from simple_websocket import ConnectionClosed, Server
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.api.context import ApiContext, api_context
from app.api.errors import ApiError
from app.api.live import tokens
from app.api.live.hub import HubUnavailable, Mailbox, UserAtLimit
from app.api.schemas import FieldError
from app.core import inbox_events
from app.core.db import transaction
from app.store import inbox

log = logging.getLogger(__name__)

blueprint = Blueprint("websocket", __name__)
sock = Sock()

AUTH_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE_BYTES = 65536
MAX_IDS = 100
CLOSE_LINGER_SECONDS = 1.0


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Auth(BaseModel):
    type: str
    token: object = None
    cursor: str | None = Field(default=None, max_length=200)


class _Read(BaseModel, extra="forbid"):
    type: str
    ids: list[Any] = Field(min_length=1, max_length=MAX_IDS)


class _ReaderThread(threading.Thread):
    """simple-websocket's per-socket reader, as a daemon: a reader still waiting on a dead
    client must not keep a stopping worker process alive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


def server_options(ping_interval_seconds: float) -> dict[str, Any]:
    """flask-sock's ``SOCK_SERVER_OPTIONS``: the server pings; a client that did not answer the
    previous ping is closed (1008), which is how dead clients are dropped."""
    return {
        "ping_interval": ping_interval_seconds,
        "max_message_size": MAX_MESSAGE_BYTES,
        "thread_class": _ReaderThread,
    }


def notifications(ws: Server) -> None:
    found = api_context()
    if not found.hub.admit_pending():
        # Refused before anything is read: an unauthenticated flood costs a handshake each.
        ws.close(1013, "too many sockets waiting to authenticate; retry")
        _linger(ws)
        return
    try:
        _session(ws, found)
    except Closed as closed:
        ws.close(closed.code, closed.reason)
    except (DBAPIError, PoolTimeout) as exc:
        if isinstance(exc, DBAPIError) and not (
            isinstance(exc, OperationalError) or exc.connection_invalidated
        ):
            raise  # not an outage: a bug, logged with its traceback
        # PostgreSQL lost or hung (what the REST routes answer 503 database_unavailable for):
        # one line for operators, and a code that tells the client to come back.
        cause = getattr(exc, "orig", exc)  # the driver's message: no SQL, no parameters
        log.warning(
            "socket closed: database unavailable: %s: %s",
            type(cause).__name__,
            str(cause).strip(),
        )
        ws.close(1011, "database unavailable; retry")
    finally:
        _linger(ws)


sock.route("/ws/notifications", bp=blueprint)(notifications)


class Owner(NamedTuple):
    """Whose inbox the socket follows."""

    project_id: str
    user_id: str

    @property
    def inbox(self) -> str:
        return inbox_events.inbox_of(self.project_id, self.user_id)


def _session(ws: Server, found: ApiContext) -> None:
    try:
        owner, after = _authenticate(ws, found)
        mailbox = _open(found, owner)
    finally:
        found.hub.release_pending()  # authenticated (and opened or refused), or gone
    try:
        _serve(ws, found, owner, mailbox, after)
    finally:
        found.hub.close(mailbox)


def _open(found: ApiContext, owner: Owner) -> Mailbox:
    try:
        mailbox = found.hub.open(owner.inbox)
    except HubUnavailable:
        raise Closed(1011, "live delivery unavailable; retry") from None
    except UserAtLimit:
        raise Closed(4409, "too many open sockets for this user") from None
    if mailbox is None:
        raise Closed(1013, "server at capacity; retry")
    return mailbox


def _linger(ws: Server) -> None:
    """Give the client a moment to answer the close before gunicorn closes the socket: the
    socket's reader thread then sees the end of the stream and exits, instead of waiting on a
    closed descriptor until its next ping."""
    if ws.connected:
        try:
            ws.close()
        except ConnectionClosed:
            pass
    ws.thread.join(CLOSE_LINGER_SECONDS)


def _authenticate(ws: Server, found: ApiContext) -> tuple[Owner, int]:
    raw = ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
    if raw is None:
        raise Closed(4408, "no auth message in time")
    try:
        auth = _Auth.model_validate_json(raw)
    except ValidationError:
        raise Closed(4400, "first message must be {type: auth, token}") from None
    if auth.type != "auth":
        raise Closed(4400, "first message must be {type: auth, token}")
    try:
        owner = Owner(*tokens.verify(found.settings.ws_token_secret, auth.token))
    except tokens.TokenError as refused:
        raise Closed(4401, refused.reason) from None
    after = 0
    if auth.cursor:
        try:
            after = inbox.decode_cursor(auth.cursor)
        except ValueError:
            raise Closed(4400, "invalid cursor") from None
    return owner, after


def _serve(ws: Server, found: ApiContext, owner: Owner, mailbox: Mailbox, after: int) -> None:
    # The socket's reader thread (simple-websocket) and the hub's listener both set this one
    # event, so this thread sleeps until there is something to read or something to send.
    ws.event = mailbox.wake
    # The ids of the unread items this socket has sent: what the client shows as unread.
    shown: set[str] = set()
    # Every item up to ``floor`` was sent by a catch-up; above it, ``sent`` holds the positions
    # sent live. Two workers may publish a user's items out of position order (each publishes
    # after its own commit), so an item below the highest one sent is not necessarily a repeat.
    sent: set[int] = set()
    floor = _catch_up(ws, found, owner, after, shown, sent)
    while True:
        mailbox.wake.clear()
        while (raw := ws.receive(timeout=0)) is not None:
            _handle(ws, found, owner, raw)
        if mailbox.closing is not None:
            raise Closed(*mailbox.closing)
        if mailbox.overflowed:
            raise Closed(4429, "too slow to read events; reconnect with your cursor")
        if mailbox.resync:
            mailbox.resync = False
            _send_marks_missed(ws, found, owner, shown)
            floor = _catch_up(ws, found, owner, floor, shown, sent)
        for event in mailbox.take():
            if event["type"] == "item":
                position = inbox.decode_cursor(event["item"]["cursor"])
                if position <= floor or position in sent:
                    continue  # already sent, with a catch-up or live
                sent.add(position)
                shown.add(event["item"]["id"])
            else:
                shown.difference_update(event.get("ids", ()))
            ws.send(orjson.dumps(event).decode())
        if not ws.connected:
            return
        mailbox.wake.wait(30)


def _catch_up(
    ws: Server, found: ApiContext, owner: Owner, after: int, shown: set[str], sent: set[int]
) -> int:
    """Send the unread items after position ``after`` not sent live already, then ``ready``;
    returns the position up to which every item is now sent. A user's positions commit in
    order (app/store/inbox.py), so once one is read every lower one of the user is too."""
    with transaction(found.engine) as conn:
        items = inbox.unread_after(conn, *owner, after)
        unread = inbox.unread_count(conn, *owner)
    last = after
    for item in items:
        last = inbox.decode_cursor(item["cursor"])
        if last in sent:
            continue
        ws.send(orjson.dumps(inbox_events.item_event(item, unread)).decode())
        shown.add(item["id"])
    last = max([last, *sent]) if items else max([after, *sent])
    sent.clear()
    ready: dict[str, Any] = {"type": "ready", "unreadCount": unread}
    ready["cursor"] = inbox.encode_cursor(last) if last else None
    ws.send(orjson.dumps(ready).decode())
    return last


def _send_marks_missed(ws: Server, found: ApiContext, owner: Owner, shown: set[str]) -> None:
    """After the hub lost Redis: the read and delete marks it missed, as the events it would
    have forwarded, for the items this socket showed as unread (new items follow with the
    catch-up)."""
    with transaction(found.engine) as conn:
        unread_now = {item["id"] for item in inbox.unread_after(conn, *owner, None)}
        gone = sorted(shown - unread_now)
        read = [i for i in gone if inbox.get(conn, *owner, uuid.UUID(i)) is not None]
        unread = inbox.unread_count(conn, *owner)
    deleted = [i for i in gone if i not in read]
    if read:
        ws.send(orjson.dumps(inbox_events.read_event(read, unread)).decode())
    if deleted:
        ws.send(orjson.dumps(inbox_events.deleted_event(deleted, unread)).decode())
    shown.difference_update(gone)


def _handle(ws: Server, found: ApiContext, owner: Owner, raw: str | bytes) -> None:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(ws, ApiError(400, "malformed_json", "The message is not valid JSON."))
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        ws.send('{"type":"pong"}')
    elif kind == "read":
        try:
            ids = [_uuid(i) for i in _Read.model_validate(message).ids]
        except ValidationError as exc:
            return _error(ws, ApiError.from_validation(exc, "message"))
        except ValueError:
            return _error(ws, _invalid_ids())
        _mark(found, owner, lambda conn: inbox.mark_read(conn, *owner, ids))
    elif kind == "read-all":
        _mark(found, owner, lambda conn: inbox.mark_all_read(conn, *owner))
    else:
        _error(ws, ApiError(422, "unknown_type", "type must be read, read-all or ping."))


def _mark(found: ApiContext, owner: Owner, mark: Callable[[Any], list[str]]) -> None:
    with transaction(found.engine) as conn:
        marked = mark(conn)
        unread = inbox.unread_count(conn, *owner)
    if marked:
        # Every tab of the user, this one included, learns it the same way.
        inbox_events.publish(found.redis, owner.inbox, inbox_events.read_event(marked, unread))


def _uuid(raw: object) -> uuid.UUID:
    if not isinstance(raw, str):
        raise ValueError("not a uuid")
    return uuid.UUID(raw)


def _invalid_ids() -> ApiError:
    return ApiError.invalid(
        [FieldError(field="ids", rule="uuid", message="every id must be an inbox item id")],
        "message",
    )


def _error(ws: Server, error: ApiError) -> None:
    ws.send(
        orjson.dumps(
            {
                "type": "error",
                "code": error.code,
                "message": error.message,
                "fields": [f.model_dump() for f in error.fields],
            }
        ).decode()
    )
