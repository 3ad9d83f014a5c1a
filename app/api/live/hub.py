"""One API process's open sockets and its one Redis pub/sub listener thread.

Each socket has a mailbox. The listener thread only appends to mailboxes and wakes their
sockets; the socket's own thread writes to the network, so a slow client delays no one else.
The listener is subscribed exactly to the channels of the users with a socket in this process,
which makes PUBLISH's answer the number of processes holding a socket of that user.

Only the listener thread touches the PubSub object (redis-py's PubSub is not thread-safe). Other
threads change what it should be subscribed to and wake it by publishing to this process's own
control channel.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.core import metrics
from app.core.inbox_events import CHANNEL_PREFIX, user_channel
from app.core.pubsub import channel as scoped_channel
from app.core.redis_clients import redis_client
from app.core.settings import Settings

log = logging.getLogger(__name__)

CLIENT_NAME = "notification-service-inbox-hub"
MAILBOX_LIMIT = 1000
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


class UserAtLimit(Exception):
    """The user already has as many sockets on this process as one user may."""


class HubUnavailable(Exception):
    """Redis did not confirm the subscription in time."""


class Mailbox:
    """What the listener hands to one socket: events to send, and why to wake up."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.wake = threading.Event()
        self._events: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.overflowed = False
        self.resync = False
        self.closing: tuple[int, str] | None = None

    def put(self, event: dict[str, Any]) -> None:
        with self._lock:
            if len(self._events) >= MAILBOX_LIMIT:
                self.overflowed = True
            else:
                self._events.append(event)
        self.wake.set()

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        self.wake.set()


class Hub:
    def __init__(
        self,
        settings: Settings,
        max_connections: int,
        max_per_user: int = 10,
        max_pending: int = 100,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_user = max_per_user
        self.max_pending = max_pending
        self._pending = 0
        # Errors surface at once (no silent internal retry), so the listener always knows that
        # it reconnected (to the promoted master, after a Sentinel failover) and that its
        # sockets must catch up from the database.
        self._client = redis_client(
            settings,
            timeout=5,
            socket_connect_timeout=2,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=CLIENT_NAME,
        )
        self._control = scoped_channel(self._client, f"inapp:control:{uuid.uuid4().hex}")
        self._user_prefix = scoped_channel(self._client, CHANNEL_PREFIX)
        self._lock = threading.Lock()
        self._by_user: dict[str, set[Mailbox]] = {}
        self._subscribed: dict[str, threading.Event] = {}
        self._count = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_pending = False

    @property
    def open_sockets(self) -> int:
        return self._count

    def admit_pending(self) -> bool:
        """Count a socket that has not authenticated yet; False when this process already
        holds ``max_pending`` of them (the caller closes it at once). Until they authenticate
        sockets have this budget of their own, so clients that never do cannot take the
        connections HTTP or authenticated sockets need."""
        with self._lock:
            if self._pending >= self.max_pending or self._stopping:
                return False
            self._pending += 1
            return True

    def release_pending(self) -> None:
        """The socket admitted by ``admit_pending`` authenticated (and was opened or refused),
        or went away."""
        with self._lock:
            self._pending -= 1

    def open(self, user_id: str) -> Mailbox | None:
        """A mailbox that receives the user's events from now on, or None when this process
        holds as many sockets as it may. Returns only once Redis confirmed the subscription, so
        anything committed after this returns reaches the mailbox."""
        self._start()
        mailbox = Mailbox(user_id)
        channel = user_channel(self._client, user_id)
        with self._lock:
            if self._count >= self.max_connections or self._stopping:
                return None
            if len(self._by_user.get(user_id, ())) >= self.max_per_user:
                raise UserAtLimit(user_id)
            self._count += 1
            self._by_user.setdefault(user_id, set()).add(mailbox)
            subscribed = self._subscribed.setdefault(channel, threading.Event())
        metrics.WEBSOCKETS_OPEN.inc()
        if not subscribed.is_set():
            self._wake_listener()
            if not subscribed.wait(SUBSCRIBE_TIMEOUT_SECONDS):
                self.close(mailbox)
                raise HubUnavailable("no subscription confirmed by Redis")
        return mailbox

    def close(self, mailbox: Mailbox) -> None:
        with self._lock:
            mailboxes = self._by_user.get(mailbox.user_id, set())
            if mailbox not in mailboxes:
                return
            mailboxes.discard(mailbox)
            self._count -= 1
            if not mailboxes:
                del self._by_user[mailbox.user_id]
                self._subscribed.pop(user_channel(self._client, mailbox.user_id), None)
        metrics.WEBSOCKETS_OPEN.dec()
        self._wake_listener()

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Ask every socket to close (the process is stopping). Safe in a signal handler."""
        self._stopping = True
        for mailboxes in list(self._by_user.values()):
            for mailbox in list(mailboxes):
                mailbox.close(code, reason)

    def _wake_listener(self) -> None:
        # Called after changing the socket table. One wake-up in flight is enough: the listener
        # clears the flag before it reads the table, so it sees every change made before.
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._client.publish(self._control, b"")
        except redis.RedisError as exc:
            self._wake_pending = False
            log.warning("could not wake the inbox listener: %s", exc)

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._listen, name="inbox-listener", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        backoff = 0.1
        first = True
        while True:
            pubsub = self._client.pubsub()
            started = time.monotonic()
            try:
                self._run(pubsub, catch_up=not first)
            except Exception as exc:
                log.warning("inbox listener lost Redis (%s); reconnecting", exc)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass
            first = False
            backoff = 0.1 if time.monotonic() - started > 30 else min(backoff * 2, 5.0)
            time.sleep(backoff)

    def _run(self, pubsub: redis.client.PubSub, *, catch_up: bool) -> None:
        requested: set[str] = set()
        confirmed: set[str] = set()
        # The users' channels first, then the control channel: Redis answers in order, so once
        # the control channel is confirmed every user channel is live again.
        self._reconcile(pubsub, requested, confirmed)
        pubsub.subscribe(self._control)
        while True:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                self._reconcile(pubsub, requested, confirmed)
                continue
            kind = message["type"]
            channel = message["channel"].decode()
            if channel == self._control and kind == "message":
                self._reconcile(pubsub, requested, confirmed)
            if kind == "subscribe":
                confirmed.add(channel)
                if catch_up and channel == self._control:
                    # Events published while the listener was away were lost; each socket,
                    # subscribed again, reads what it missed from the database.
                    catch_up = False
                    self._ask_all_to_resync()
                with self._lock:
                    ready = self._subscribed.get(channel)
                if ready is not None:
                    ready.set()
            elif kind == "unsubscribe":
                confirmed.discard(channel)
            elif kind == "message" and channel.startswith(self._user_prefix):
                self._forward(channel[len(self._user_prefix) :], message["data"])

    def _reconcile(self, pubsub: Any, requested: set[str], confirmed: set[str]) -> None:
        """Subscribe to the channels of users with a socket here, and only those."""
        self._wake_pending = False
        with self._lock:
            wanted = {user_channel(self._client, user) for user in self._by_user}
            live = wanted & confirmed & requested
            already = [self._subscribed[c] for c in live if c in self._subscribed]
        for ready in already:
            ready.set()
        add, drop = wanted - requested, requested - wanted
        if add:
            pubsub.subscribe(*add)
            requested |= add
        if drop:
            pubsub.unsubscribe(*drop)
            requested -= drop
            confirmed -= drop

    def _forward(self, user_id: str, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed inbox event")
            return
        with self._lock:
            mailboxes = list(self._by_user.get(user_id, ()))
        for mailbox in mailboxes:
            mailbox.put(event)
        metrics.WEBSOCKET_EVENTS_FORWARDED.inc(len(mailboxes))

    def _ask_all_to_resync(self) -> None:
        with self._lock:
            mailboxes = [m for ms in self._by_user.values() for m in ms]
        for mailbox in mailboxes:
            mailbox.resync = True
            mailbox.wake.set()
