"""A worker told to stop (SIGTERM, as Kubernetes and systemd do) finishes the tasks it is running,
records every outcome, hands back what it had not started, and exits: nothing is lost, left
SENDING, or sent twice."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from app.core.domain import Channel
from app.core.settings import Settings
from tests.helpers.db import status_counts
from tests.helpers.factories import make_api_key, make_notification
from tests.helpers.processes import Processes, wait_for
from tests.standins.webhook import Reply, WebhookReceiver, live_webhook

HOOKS = 40


def test_a_worker_stopped_by_sigterm_finishes_its_tasks_and_the_next_worker_sends_the_rest_once(
    settings: Settings, engine: Engine, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    key = make_api_key(engine, "shutdown")
    for i in range(HOOKS):
        receiver.plan(f"/hook{i}", Reply(200, delay=0.15))
        make_notification(
            engine,
            channels=[Channel.WEBHOOK],
            api_key_id=key.id,
            webhook_url=f"{receiver.url}/hook{i}",
        )
    processes = Processes(live_webhook(settings), tmp_path)
    try:
        worker = processes.worker("webhook", WORKER_CONCURRENCY="2")
        processes.relay(RELAY_TASK_CHUNK="5")
        wait_for(lambda: len(receiver.requests) >= 3, timeout=20, what="sending under way")
        worker.popen.send_signal(signal.SIGTERM)
        code = worker.popen.wait(20)
        stopped_at = status_counts(engine)
        received_by_then = len(receiver.requests)

        processes.worker("webhook", WORKER_CONCURRENCY="2")
        wait_for(lambda: status_counts(engine) == {"SENT": HOOKS}, timeout=60, what="all SENT")
    finally:
        processes.stop_all()

    assert code == 0
    # Every task it had begun was finished and recorded; what it had not begun went back.
    assert "SENDING" not in stopped_at, stopped_at
    assert stopped_at.get("SENT", 0) == received_by_then
    assert 0 < received_by_then < HOOKS
    per_hook = Counter(request.path for request in receiver.requests)
    assert per_hook == Counter(f"/hook{i}" for i in range(HOOKS))
