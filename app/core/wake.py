"""Waking the relay: a Redis message published after the accepting transaction commits.

Not PostgreSQL NOTIFY: a transaction that issued NOTIFY holds a global lock through its commit,
which serialises concurrent commits (bench/RESULTS.md measures the cost).
A lost wake-up costs only latency: the relay also polls every RELAY_POLL_INTERVAL_MS.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from app.core.pubsub import channel
from app.core.redis_clients import redis_client
from app.core.settings import Settings

log = logging.getLogger(__name__)

WAKE_CHANNEL = "outbox:wake"


def wake_relay(client: redis.Redis) -> None:
    """Tell every relay there is work. Never fails the caller: the rows are committed already."""
    try:
        client.publish(channel(client, WAKE_CHANNEL), b"")
    except redis.RedisError as exc:
        log.debug("relay wake-up not sent (%s); relays will poll", type(exc).__name__)


class Waker:
    """Wakes the relays from a background thread, so a request never waits on Redis.

    ``wake()`` (called after a commit) only sets a flag; the thread publishes once for every
    burst of flags, so a busy API process sends at most about one wake-up per millisecond, each
    after every commit that asked for it. Started on first use, so it lives in the process that
    serves requests (after gunicorn forks).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._thread is None:
            self._start()
        self._wanted.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="relay-waker", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            wake_relay(self._client)
            time.sleep(0.001)


class WakeListener:
    """The relay's side: blocks until a wake-up, a timeout or a stop; survives Redis restarts."""

    def __init__(self, settings: Settings) -> None:
        # Through Sentinel, if configured: a subscription lost in a failover is made again on
        # the promoted master.
        self._client = redis_client(settings, timeout=5)
        self._pubsub: redis.client.PubSub | None = None

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """True if woken, False after ``timeout`` or when ``stop`` is set."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                pubsub = self._subscribed()
                if pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, 0.5)):
                    while pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass  # many wake-ups while busy mean one drain
                    return True
            except (redis.RedisError, OSError):
                log.warning("wake-up subscription lost; polling until Redis is back")
                self.close()
                stop.wait(min(max(remaining, 0), 1.0))
        return False

    def subscribe(self) -> None:
        """Subscribe now, so wake-ups sent from here on are kept (Redis may be down: then the
        first wait() retries)."""
        try:
            self._subscribed()
        except (redis.RedisError, OSError):
            self.close()

    def _subscribed(self) -> redis.client.PubSub:
        if self._pubsub is None:
            pubsub = self._client.pubsub()
            pubsub.subscribe(channel(self._client, WAKE_CHANNEL))
            self._pubsub = pubsub
        return self._pubsub

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except (redis.RedisError, OSError):
                pass
            self._pubsub = None
