"""A hung server: a TCP listener on 127.0.0.1 that accepts connections and never answers.

With a ``target`` it can also be a transparent proxy to a real server (``forward()``), and hang
again (``hang()``): then every connection freezes, forwarded ones included (what either side
sends is read and dropped), as when PostgreSQL or Redis stops answering without closing
anything. A frozen connection stays frozen after ``forward()``: a client must give up on it and
connect again, which is what the service's deadlines are for.

``stall()`` and ``resume()`` are the gentler fault, a server that stops answering for a while
and then answers everything it was sent (a paused process, a long blocking command): while
stalled nothing passes in either direction, new connections included, and nothing is dropped.
"""

from __future__ import annotations

import socket
import threading


class Tarpit:
    def __init__(self, target: tuple[str, int] | None = None, max_connections: int = 256) -> None:
        self.target = target
        self.max_connections = max_connections
        self.accepted = 0
        self._forwarding = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._frozen: set[int] = set()  # ids of forwarded connections that hang from now on
        self._sockets: list[socket.socket] = []
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
            self._frozen.update(range(len(self._sockets)))

    def stall(self) -> None:
        """Nothing passes from now on, in either direction; what is sent waits (see resume)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Everything held by ``stall`` passes, and new connections reach ``target`` again."""
        self._flowing.set()

    def stop(self) -> None:
        with self._lock:
            doomed, self._sockets = [self._listener, *self._sockets], []
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes threads blocked in accept() or recv()
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self.accepted += 1
                if len(self._sockets) >= self.max_connections:
                    client.close()
                    continue
                forwarding = self._forwarding
                index = len(self._sockets)
                self._sockets.append(client)
            if not forwarding:
                continue  # held open, never read, never answered
            threading.Thread(
                target=self._connect, args=(index, client), name="tarpit-connect", daemon=True
            ).start()

    def _connect(self, index: int, client: socket.socket) -> None:
        assert self.target is not None
        self._flowing.wait()  # a stalled server answers no new connection either
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pipe, args=(index, source, sink), name="tarpit-pipe", daemon=True
            ).start()

    def _pipe(self, index: int, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                if index not in self._frozen:
                    sink.sendall(data)
        except OSError:
            pass
