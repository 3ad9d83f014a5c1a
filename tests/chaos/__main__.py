"""The long chaos run: ``python -m tests.chaos --minutes 10``.

The real stack (the API under gunicorn, a relay, two Celery workers) on a private PostgreSQL and
a private Redis, each reached through a proxy this run controls, with the provider stand-ins
(SMTP, a webhook receiver, a Twilio-compatible SMS gateway) failing a share of calls. A steady
load of ``--rate`` notifications a second goes through the API for ``--minutes`` while every
fault below happens at moments drawn from ``--seed``; then the run waits (bounded) for every
delivery to finish and prints the chaos test's summary (tests/chaos/accounting.py). The exit
status is 1 when the summary breaks a guarantee (anything lost, a worker kill with more
duplicates than the worker's concurrency, a duplicate no kill explains, a refusal no fault
explains, a bad input not refused alone), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.api.keys import create_api_key
from app.core.db import make_engine, migrate
from app.core.settings import Settings
from tests.chaos.accounting import problems, received_copies, summary, wait_until_finished
from tests.chaos.load import SteadyLoad
from tests.chaos.plan import FAULTS, LEASE_SECONDS, REQUEST_FAULTS, SLOW_SECONDS, Plan
from tests.chaos.services import PrivatePostgres, PrivateRedis
from tests.helpers.net import free_port
from tests.helpers.processes import Process, Processes
from tests.standins.sms import SENDER, SmsGatewayStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.tarpit import Tarpit
from tests.standins.webhook import WebhookReceiver

WORKER_CONCURRENCY = 8  # the setting's default; also the duplicates one worker kill may cause
SETTLE_SECONDS = 300  # after the load, the longest wait for every delivery to finish
PROVIDER_FAILURE_RATE = 0.05
SMS_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
SMS_AUTH_TOKEN = "chaos-sms-auth-token"
WS_TOKEN_SECRET = "chaos-only-ws-token-secret-0123456789abcdef"


class Stack:
    """The service's processes and what they depend on, with the faults to inflict on them."""

    def __init__(self, directory: Path, rng: random.Random) -> None:
        self.directory = directory
        self.rng = rng
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(directory)
        self.smtp = SmtpStandIn()
        self.receiver = WebhookReceiver()
        self.gateway = SmsGatewayStandIn(SMS_ACCOUNT_SID, SMS_AUTH_TOKEN)
        self.postgres_proxy: Tarpit | None = None
        self.redis_proxy: Tarpit | None = None
        self.processes: Processes | None = None
        self.running: dict[str, Process] = {}
        self.port = free_port()
        self.worker_kills: list[float] = []  # time.monotonic() of each worker kill
        self.faults: Counter[str] = Counter()

    def start(self, seed: int) -> Settings:
        self.postgres.start()
        self.redis.start()
        self.smtp.start()
        self.receiver.start()
        self.gateway.start()
        self.smtp.fail_randomly(PROVIDER_FAILURE_RATE, seed, stall_seconds=3.0)
        self.receiver.fail_randomly(PROVIDER_FAILURE_RATE, seed, stall_share=0.0)
        # Many connections come and go over a long run (restarts, deadlines): room for all.
        self.postgres_proxy = Tarpit(("127.0.0.1", self.postgres.port), 4096).start()
        self.redis_proxy = Tarpit(("127.0.0.1", self.redis.port), 4096).start()
        self.postgres_proxy.forward()
        self.redis_proxy.forward()
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{self.postgres_proxy.port}/chaos",
            redis_url=f"redis://127.0.0.1:{self.redis_proxy.port}/0",
            email_provider="smtp",
            smtp_port=self.smtp.port,
            smtp_timeout_seconds=1.5,
            webhook_provider="http",
            webhook_allowed_networks="127.0.0.1/32",
            webhook_connect_timeout_seconds=1.0,
            webhook_read_timeout_seconds=SLOW_SECONDS + 3,
            sms_provider="twilio",
            sms_api_base_url=self.gateway.url,
            sms_account_sid=SMS_ACCOUNT_SID,
            sms_auth_token=SMS_AUTH_TOKEN,
            sms_from=SENDER,
            delivery_max_attempts=8,
            retry_backoff_base_seconds=0.2,
            retry_backoff_max_seconds=2.0,
            sweeper_lease_seconds=LEASE_SECONDS,
            sweeper_interval_seconds=1.0,
            relay_poll_interval_ms=500,
            worker_concurrency=WORKER_CONCURRENCY,
            api_workers=2,
            rate_limit_per_second=0.0,
            relay_metrics_port=0,
            worker_metrics_port=0,
            ws_token_secret=WS_TOKEN_SECRET,
            log_format="text",
        )
        migrate(self.postgres.url)
        self.processes = Processes(settings, self.directory)
        self.running = {
            "api": self.processes.api(self.port),
            "relay": self.processes.relay(),
            "worker-a": self.processes.worker("email,webhook,sms"),
            "worker-b": self.processes.worker("email,webhook,sms"),
        }
        return settings

    def inflict(self, fault: str) -> None:
        processes = self.processes
        assert processes is not None
        assert self.postgres_proxy is not None and self.redis_proxy is not None
        if fault == "kill-worker":
            name = self.rng.choice(["worker-a", "worker-b"])
            self._kill_and_restart(name, lambda: processes.worker("email,webhook,sms"))
        elif fault == "kill-relay":
            self._kill_and_restart("relay", processes.relay)
        elif fault == "kill-api":
            self._kill_and_restart("api", lambda: processes.api(self.port))
        elif fault == "kill-api-worker":
            # One gunicorn worker dies; its master starts another.
            children = _children(self.running["api"].popen.pid)
            if children:
                os.kill(self.rng.choice(children), signal.SIGKILL)
        elif fault == "flush-redis":
            self.redis.flush_and_restart()
        elif fault == "restart-postgres":
            self.postgres.restart()
        elif fault == "stall-redis":
            self._stall(self.redis_proxy, self.rng.uniform(2, 5))
        elif fault == "stall-postgres":
            self._stall(self.postgres_proxy, self.rng.uniform(2, 4))
        self.faults[fault] += 1

    def _kill_and_restart(self, name: str, start: Callable[[], Process]) -> None:
        self.running[name].kill()
        if name.startswith("worker"):
            self.worker_kills.append(time.monotonic())
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.running[name] = start()

    def _stall(self, proxy: Tarpit, seconds: float) -> None:
        """The engine accepts connections and answers nothing for ``seconds``, then answers new
        connections again (the frozen ones stay frozen, as a hung server's would)."""
        proxy.hang()
        time.sleep(seconds)
        proxy.forward()

    def stop(self) -> None:
        if self.processes is not None:
            self.processes.stop_all()
        for proxy in (self.postgres_proxy, self.redis_proxy):
            if proxy is not None:
                proxy.stop()
        for stop in (self.gateway.stop, self.receiver.stop, self.smtp.stop):
            try:
                stop()
            except Exception:  # a stand-in that never started
                pass
        self.redis.stop()
        self.postgres.stop()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run(minutes: float, rate: float, seed: int, faults: tuple[str, ...]) -> int:
    seconds = minutes * 60
    rng = random.Random(seed)
    plan = Plan(seconds, rate, faults, rng).draw()
    directory = Path(tempfile.mkdtemp(prefix="chaos-run-"))
    print(
        f"chaos run: {minutes:g} min at {rate:g}/s, seed {seed}, faults {','.join(faults)};"
        f" logs in {directory}",
        flush=True,
    )
    stack = Stack(directory, rng)
    try:
        stack.start(seed)
        plan.plan_receiver(stack.receiver)
        engine = make_engine(Settings(database_url=stack.postgres.url), statement_timeout_ms=0)
        try:
            key = create_api_key(engine, "chaos").key
            load = SteadyLoad(
                stack.port,
                key,
                lambda index: plan.body(stack.receiver.url, index),
                rate,
                seconds,
                # Room to catch up after the faults' refusals, on a machine a little short of
                # the rate; what is still unanswered then is counted (gave_up).
                give_up_after=seconds + max(120.0, seconds / 2),
                clients=max(8, math.ceil(rate / 3)),
            )

            def inject() -> None:
                began = time.monotonic()
                for moment, fault in plan.moments:
                    if fault in REQUEST_FAULTS:
                        stack.faults[fault] += 1  # carried by the requests due from now on
                        continue
                    time.sleep(max(0.0, began + moment - time.monotonic()))
                    print(f"  {time.monotonic() - began:6.1f}s {fault}", flush=True)
                    stack.inflict(fault)

            injector = threading.Thread(target=inject, name="injector")
            began = time.monotonic()
            injector.start()
            load.run()
            injector.join()
            loaded = time.monotonic()
            print(f"load done: {len(load.accepted)} accepted of {load.total}; settling", flush=True)
            settled = wait_until_finished(engine, SETTLE_SECONDS)
            finished = time.monotonic()
            received = received_copies(engine, stack.smtp, stack.receiver, stack.gateway)
            figures = summary(
                engine,
                load,
                received,
                stack.worker_kills,
                stack.faults,
                seed,
                WORKER_CONCURRENCY,
                poisoned=[i for i, f in plan.carried.items() if f == "poison-request"],
            )
            figures.update(
                settled=settled,
                load_seconds=round(loaded - began, 1),
                accepted_per_second=round(len(load.accepted) / (loaded - began), 1),
                settle_seconds=round(finished - loaded, 1),
            )
        finally:
            engine.dispose()
    finally:
        stack.stop()
    print("chaos summary: " + json.dumps(figures, sort_keys=True))
    found = problems(figures)
    for problem in found:
        print(f"FAILED: {problem}")
    if figures["gave_up"]:
        print(
            f"WARNING: {figures['gave_up']} requests got no final answer in time: the machine"
            f" did not keep up with {rate:g}/s, and what they carried was not tested"
        )
    if not found:
        print("PASSED: nothing lost, every worker kill within its bound")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=100.0, help="notifications a second")
    parser.add_argument(
        "--seed", type=int, default=None, help="replays a run's choices (default: drawn)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated subset of: {', '.join(FAULTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown faults: {', '.join(unknown)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    return run(args.minutes, args.rate, seed, faults)


if __name__ == "__main__":
    sys.exit(main())
