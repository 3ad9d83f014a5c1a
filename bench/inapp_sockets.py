"""One API process holding many idle WebSockets: what it costs, and how fast a broadcast is.

Starts ``notification-service api`` (one gunicorn gevent worker) on a free port, opens
``--idle`` sockets of distinct users plus ``--tabs`` sockets of one target user from a single
asyncio client (wsproto, so the client side needs no thread per socket), then publishes
``--samples`` inbox events to the target user's Redis channel, the way the IN_APP provider
does, and times PUBLISH → every target socket has the event. Prints a Markdown report.

    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/inapp_sockets.py

Uses the database and Redis named by DATABASE_URL and REDIS_URL (migrated if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from app.api.live import tokens
from app.core import inbox_events
from app.core.db import migrate
from app.core.settings import Settings
from app.store import inbox

BIN = Path(sys.executable).parent


class Socket:
    """One client WebSocket on the asyncio loop; answers pings, records what it receives."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.ready = asyncio.Event()
        self.closed: tuple[int, str | None] | None = None
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        connection = WSConnection(ConnectionType.CLIENT)
        writer.write(connection.send(Request(host="127.0.0.1", target="/ws/notifications")))
        text = ""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    auth = {"type": "auth", "token": self.token}
                    writer.write(connection.send(TextMessage(json.dumps(auth))))
                elif isinstance(event, Ping):
                    writer.write(connection.send(event.response()))
                elif isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        self._received(json.loads(text), time.perf_counter())
                        text = ""
                elif isinstance(event, CloseConnection):
                    self.closed = (event.code, event.reason)
                    writer.close()
                    return

    def _received(self, message: dict, at: float) -> None:
        if message["type"] == "ready":
            self.ready.set()
        elif message["type"] == "item":
            waiter = self.waiters.pop(message["item"]["id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(at)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(args: argparse.Namespace, port: int, secret: str, worker_pid: int) -> dict:
    def token(user: str) -> str:
        return tokens.issue(secret, "default", user, 600).value

    idle = [Socket(port, token(f"idle-{i}")) for i in range(args.idle)]
    started = time.perf_counter()
    tasks = []
    for batch in range(0, len(idle), 100):
        for s in idle[batch : batch + 100]:
            tasks.append(asyncio.create_task(s.run()))
        await asyncio.gather(*(s.ready.wait() for s in idle[batch : batch + 100]))
    connect_seconds = time.perf_counter() - started
    refused = [s.closed for s in idle if s.closed]
    target = [Socket(port, token("target")) for _ in range(args.tabs)]
    tasks += [asyncio.create_task(s.run()) for s in target]
    await asyncio.gather(*(s.ready.wait() for s in target))

    await asyncio.sleep(2)
    status = proc_status(worker_pid)
    cpu_before = cpu_seconds(worker_pid)
    await asyncio.sleep(args.idle_seconds)
    idle_cpu = (cpu_seconds(worker_pid) - cpu_before) / args.idle_seconds

    client = aioredis.Redis.from_url(args.redis_url)
    latencies: list[float] = []
    receivers = set()
    for n in range(args.samples):
        item_id = f"bench-{n}"
        event = inbox_events.item_event(
            {"id": item_id, "body": "x", "cursor": inbox.encode_cursor(10**12 + n)}, 1
        )
        waiters = []
        for s in target:
            waiters.append(asyncio.get_running_loop().create_future())
            s.waiters[item_id] = waiters[-1]
        sent_at = time.perf_counter()
        receivers.add(
            await client.publish(
                inbox_events.user_channel(client, inbox_events.inbox_of("default", "target")),
                orjson.dumps(event),
            )
        )
        arrived = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        latencies.append((max(arrived) - sent_at) * 1000)
        await asyncio.sleep(args.interval_ms / 1000)
    await client.aclose()
    open_fds = len(os.listdir(f"/proc/{worker_pid}/fd"))
    for task in tasks:
        task.cancel()
    return {
        "idle": args.idle,
        "tabs": args.tabs,
        "refused": refused,
        "connect_seconds": connect_seconds,
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "threads": int(status["Threads"]),
        "fds": open_fds,
        "idle_cpu": idle_cpu,
        "receivers": sorted(receivers),
        "latencies": latencies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets of other users")
    parser.add_argument("--tabs", type=int, default=3, help="sockets of the target user")
    parser.add_argument("--samples", type=int, default=300, help="broadcasts timed")
    parser.add_argument("--interval-ms", type=float, default=20, help="pause between broadcasts")
    parser.add_argument("--idle-seconds", type=float, default=5, help="CPU sampled this long")
    settings = Settings.from_env()
    args = parser.parse_args()
    args.redis_url = settings.redis_url
    migrate(settings.database_url)
    port, secret = free_port(), secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "WS_TOKEN_SECRET": secret,
        "API_WORKERS": "1",
        "WS_MAX_CONNECTIONS": str(args.idle + args.tabs + 10),
        # Sockets open 100 at a time, all before they authenticate: room for a whole batch.
        "WS_MAX_PENDING": "200",
        "LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen(
        [str(BIN / "notification-service"), "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health/live"):
                    break
            except OSError:
                time.sleep(0.1)
        worker_pid = int(
            subprocess.check_output(["pgrep", "-P", str(api.pid)], text=True).split()[0]
        )
        result = asyncio.run(bench(args, port, secret, worker_pid))
    finally:
        api.terminate()
        api.wait(30)
    report(result)
    return 0 if not result["refused"] else 1


def report(r: dict) -> None:
    lat = r["latencies"]
    cpu = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    print(f"machine: {cpu}, Python {platform.python_version()}, {platform.platform()}")
    print(f"sockets: {r['idle']} idle users + {r['tabs']} tabs of the target user, 1 process")
    print(f"refused: {len(r['refused'])}")
    print(f"connect+auth of {r['idle']} sockets: {r['connect_seconds']:.1f} s")
    print(
        f"API worker: RSS {r['rss_mb']:.0f} MB, {r['threads']} threads, {r['fds']} fds,"
        f" idle CPU {r['idle_cpu'] * 100:.1f}% of a core"
    )
    print(f"PUBLISH receivers: {r['receivers']}")
    print(
        f"broadcast to {r['tabs']} sockets, {len(lat)} samples (ms):"
        f" p50 {statistics.median(lat):.2f}  p95 {percentile(lat, 0.95):.2f}"
        f"  p99 {percentile(lat, 0.99):.2f}  max {max(lat):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
