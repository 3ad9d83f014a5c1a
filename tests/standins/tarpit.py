"""A hung server: a TCP listener on 127.0.0.1 that accepts connections and never answers.

With a ``target`` it can also be a transparent proxy to a real server (``forward()``), and hang
again (``hang()``): then every connection freezes, forwarded ones included (what either side
sends is read and dropped), as when PostgreSQL or Redis stops answering without closing
anything. A frozen connection stays frozen after ``forward()``: a client must give up on it and
connect again, which is what the service's deadlines are for.

A connection ends when its client closes it, and a forwarded one that is not frozen also when
the server closes it (a restart), so a long chaos run through the proxy holds only the
connections in use.

``stall()`` and ``resume()`` are the gentler fault, a server that stops answering for a while
and then answers everything it was sent (a paused process, a long blocking command): while
stalled nothing passes in either direction, new connections included, and nothing is dropped.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass


@dataclass(eq=False)
class _Link:
    client: socket.socket
    upstream: socket.socket | None = None
    frozen: bool = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in recv()
            except OSError:
                pass
            sock.close()


class Tarpit:
    def __init__(self, target: tuple[str, int] | None = None, max_connections: int = 256) -> None:
        self.target = target
        self.max_connections = max_connections
        self.accepted = 0
        self._forwarding = False
        self._links: set[_Link] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]

    def start(self) -> Tarpit:
        threading.Thread(target=self._accept, name="tarpit", daemon=True).start()
        return self

    def forward(self) -> None:
        """New connections reach ``target`` from now on (frozen ones stay frozen)."""
        assert self.target is not None, "a tarpit without a target has nowhere to forward"
        with self._lock:
            self._forwarding = True

    def hang(self) -> None:
        """No connection, old or new, is answered from now on."""
        with self._lock:
            self._forwarding = False
            for link in self._links:
                link.frozen = True

    def stall(self) -> None:
        """Nothing passes from now on, in either direction; what is sent waits (see resume)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Everything held by ``stall`` passes, and new connections reach ``target`` again."""
        self._flowing.set()

    def stop(self) -> None:
        with self._lock:
            doomed, self._links = self._links, set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        for link in doomed:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            link = _Link(client)
            with self._lock:
                self.accepted += 1
                if len(self._links) >= self.max_connections:
                    client.close()
                    continue
                link.frozen = not self._forwarding
                self._links.add(link)
            threading.Thread(
                target=self._connect, args=(link,), name="tarpit-connect", daemon=True
            ).start()

    def _connect(self, link: _Link) -> None:
        if not link.frozen:
            assert self.target is not None
            self._flowing.wait()  # a stalled server answers no new connection either
            try:
                link.upstream = socket.create_connection(self.target, timeout=5)
                link.upstream.settimeout(None)
            except OSError:
                self._end(link)
                return
        # Held open and never answered while frozen; what the client sends is dropped.
        self._pipe_thread(link, link.client, link.upstream)
        if link.upstream is not None:
            self._pipe_thread(link, link.upstream, link.client)

    def _pipe_thread(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        threading.Thread(
            target=self._pipe, args=(link, source, sink), name="tarpit-pipe", daemon=True
        ).start()

    def _pipe(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                if sink is not None and not link.frozen:
                    sink.sendall(data)
        except OSError:
            pass
        if source is link.upstream and link.frozen:
            return  # the server went away, but a hung server's client hears nothing of it
        self._end(link)

    def _end(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        link.close()
