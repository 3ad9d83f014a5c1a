"""Per-API-key rate limit: a token bucket in Redis, shared by every API process.

The bucket refills at ``RATE_LIMIT_PER_SECOND`` up to ``RATE_LIMIT_BURST``; a request takes one
token or is refused with 429 and the seconds until one is back. Each API process takes tokens
from Redis in small leases (up to a twentieth of the burst, at most 50, kept for a second), so
Redis is asked about once per lease instead of once per request. One fetch per key is in
flight at a time in a process: requests that find the lease empty meanwhile wait for that fetch
and share its lease, so a burst of concurrent requests takes one lease, not one each. What is
unused a second after the fetch is dropped, so a key's tokens are spent within a second of
leaving the bucket. If Redis
cannot be reached the request is let through: an outage of the limiter must not become an
outage of the API. Nor a slowdown: the limiter's Redis client has a deadline of its own
(``RATE_LIMIT_TIMEOUT_MS``, no retries), and after a failure Redis is left alone for
``BREAK_SECONDS``, so a hung Redis costs one request in that time the deadline, and the others
nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid

import redis

from app.api.errors import ApiError

log = logging.getLogger(__name__)

# Atomic in Redis: read the bucket, refill it for the time passed, take a token if there is
# one. Redis's own clock (TIME) is used, so API hosts with skewed clocks agree.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {granted, tostring(tokens)}
"""


LEASE_SECONDS = 1.0
# After Redis failed the limiter, requests pass unchecked this long before Redis is asked again.
BREAK_SECONDS = 2.0
# How long a request waits for another request's fetch of the same key's lease before letting
# itself through, as it would if its own fetch failed; the fetch itself is bounded by the Redis
# client's timeouts, so this only matters if those are longer.
FETCH_WAIT_SECONDS = 1.0


class _Fetch:
    """One lease fetch in flight; those waiting for it read its outcome once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.granted = 0
        self.tokens = 0.0
        self.failed = True  # until Redis answered


class RateLimiter:
    def __init__(self, client: redis.Redis, per_second: float, burst: int) -> None:
        """``client`` should fail fast (a short socket timeout and no retries): each request
        that asks Redis waits for it."""
        self._take = client.register_script(_TAKE)
        self.per_second = per_second
        self.burst = burst
        self.lease_size = max(1, min(50, burst // 20))
        self._leases: dict[uuid.UUID, tuple[int, float]] = {}
        self._fetches: dict[uuid.UUID, _Fetch] = {}
        self._lock = threading.Lock()
        self._broken_until = 0.0

    def check(self, key_id: uuid.UUID) -> None:
        """Take a token for this key, or raise a 429 saying when to come back."""
        if self.per_second <= 0:
            return
        while True:
            with self._lock:
                left, until = self._leases.get(key_id, (0, 0.0))
                if left > 0 and until > time.monotonic():
                    self._leases[key_id] = (left - 1, until)
                    return
                fetch = self._fetches.get(key_id)
                mine = fetch is None
                if fetch is None:
                    fetch = self._fetches[key_id] = _Fetch()
            if mine:
                self._fetch(key_id, fetch)
            elif not fetch.done.wait(FETCH_WAIT_SECONDS):
                log.warning("rate limiter lease fetch still running; request let through")
                return
            if fetch.failed:
                return
            if fetch.granted < 1:
                self._refuse(fetch.tokens)
            if mine:
                return  # the fetch took this request's token from its lease
            # The fetch refilled the lease: take a token from it, or fetch again if the other
            # waiters emptied it first.

    def _fetch(self, key_id: uuid.UUID, fetch: _Fetch) -> None:
        try:
            if self._broken_until > time.monotonic():
                return  # Redis failed a moment ago: let the requests through (fetch.failed)
            granted, tokens = self._take(
                keys=[f"ratelimit:{key_id}"], args=[self.per_second, self.burst, self.lease_size]
            )
            fetch.granted, fetch.tokens = int(granted), float(tokens)
            fetch.failed = False
        except redis.RedisError as exc:
            self._broken_until = time.monotonic() + BREAK_SECONDS
            log.warning(
                "rate limiter unavailable (%s); requests let through for %gs",
                type(exc).__name__,
                BREAK_SECONDS,
            )
        finally:
            with self._lock:
                if fetch.granted >= 1:
                    self._leases[key_id] = (fetch.granted - 1, time.monotonic() + LEASE_SECONDS)
                del self._fetches[key_id]
            fetch.done.set()

    def _refuse(self, tokens: float) -> None:
        wait = max(1, math.ceil((1 - tokens) / self.per_second))
        raise ApiError(
            429,
            "rate_limited",
            f"Rate limit of {self.per_second:g} requests/s for this API key exceeded.",
            headers={"Retry-After": str(wait)},
        )
