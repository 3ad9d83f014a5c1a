"""The API's gunicorn worker: gthread, with a thread staying on a busy kept-alive connection.

gunicorn's gthread worker answers each request in a pool thread, then hands the connection back
to its main thread, which polls it and hands it to a pool thread again for the next request:
two thread switches, a pipe write and four selector calls per request. That cost more than our
whole request (bare Flask under gthread: 1,900 req/s, under sync workers: 4,800; bench/RESULTS.md).
Here a thread that has answered a request on a kept-alive connection waits up to
``HOLD_SECONDS`` for that connection's next request and answers it itself, as long as no other
connection is waiting for a thread; otherwise, or if the client is idle, the connection goes
back to the main thread's poller as in gthread. Threads are still needed: group commit batches
concurrent requests, and each WebSocket holds one.

"""

from __future__ import annotations

import select
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# Long enough for a busy client's next request (tens to hundreds of microseconds), short enough
# that an idle kept-alive connection frees its thread almost at once.
HOLD_SECONDS = 0.005


class HoldingThreadWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self._waiting = 0  # connections submitted to the pool and not yet picked up by a thread

    def enqueue_req(self, conn: Any) -> None:
        with self._count_lock:
            self._waiting += 1
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        with self._count_lock:
            self._waiting -= 1
        keep_alive = super().handle(conn)
        while keep_alive is True and self.alive and not self._waiting:
            # A body drain may already have read the next request into the parser's buffer.
            if not conn.parser.unreader.buf.getvalue() and not _readable(conn.sock):
                break
            keep_alive = super().handle(conn)
        return keep_alive


def _readable(sock: Any) -> bool:
    """Whether ``sock`` has data within HOLD_SECONDS (poll, not select: descriptors may exceed
    1024 here, the open-files limit is raised for WebSockets)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(HOLD_SECONDS * 1000))
