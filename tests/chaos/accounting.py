"""What a chaos run accounts for once everything is quiet, for the chaos test and the long chaos
run (``python -m tests.chaos``), which print the same summary and judge it the same way.

Every notification the API answered 2xx must be in the database with every delivery finished
(SENT, FAILED with a reason, EXPIRED or CANCELLED); the provider stand-ins must have received
every SENT delivery, and every delivery they received must be recorded SENT. A delivery may
arrive twice only because a worker was killed while its provider call was in flight (sent, or
answered and not yet recorded): each copy after the first is put down to the first worker kill
between it and the copy before, and no kill may account for more than the worker's concurrency
(one message per task it was running), nor may any duplicate lack a kill.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Collection
from itertools import pairwise
from typing import Any

from sqlalchemy import Engine, text

from tests.chaos.load import SteadyLoad
from tests.standins.sms import SmsGatewayStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook import WebhookReceiver

TERMINAL = {"SENT", "FAILED", "EXPIRED", "CANCELLED"}


def all_finished(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return not conn.scalar(
                text(
                    "SELECT count(*) FROM delivery WHERE status NOT IN"
                    " ('SENT', 'FAILED', 'EXPIRED', 'CANCELLED')"
                )
            )
    except Exception:
        return False


def wait_until_finished(engine: Engine, seconds: float) -> bool:
    """Until no delivery is in flight, at most ``seconds``; whether they all finished."""
    deadline = time.monotonic() + seconds
    while not all_finished(engine):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def received_copies(
    engine: Engine,
    smtp: SmtpStandIn,
    receiver: WebhookReceiver,
    gateway: SmsGatewayStandIn | None = None,
) -> dict[str, list[float]]:
    """When each delivery reached its provider (time.monotonic(), one entry per copy), by
    delivery id: emails by Message-ID (the delivery id), webhooks answered 200 by
    X-Notification-Id (one WEBHOOK delivery per notification), SMS accepted by the gateway by
    their To number (one number per notification)."""
    received: dict[str, list[float]] = {}
    for mail in list(smtp.received):
        received.setdefault(mail.message["Message-ID"].strip("<>").split("@")[0], []).append(
            mail.at
        )
    with engine.connect() as conn:
        webhook_of = {
            str(n): str(d)
            for n, d in conn.execute(
                text("SELECT notification_id, id FROM delivery WHERE channel = 'WEBHOOK'")
            )
        }
        sms_of = {
            str(phone): str(d)
            for phone, d in conn.execute(
                text(
                    "SELECT n.recipient_phone, d.id FROM delivery d"
                    " JOIN notification n ON n.id = d.notification_id WHERE d.channel = 'SMS'"
                )
            )
        }
    for request in list(receiver.accepted):
        notification_id = request.headers.get("x-notification-id", "")
        received.setdefault(webhook_of.get(notification_id, notification_id), []).append(request.at)
    if gateway is not None:
        with gateway.lock:
            accepted = list(gateway.sent.values())
        for sms in accepted:
            to = (sms.form.get("To") or [""])[0]
            received.setdefault(sms_of.get(to, to), []).append(sms.at)
    return received


def duplicates_by_kill(
    received: dict[str, list[float]], kills: list[float]
) -> tuple[list[int], int]:
    """Each copy after a delivery's first, put down to the first worker kill between it and the
    copy before (whose outcome that kill kept from being recorded): the count per kill, and the
    copies no kill explains."""
    per_kill, unexplained = [0] * len(kills), 0
    for times in received.values():
        for before, again in pairwise(sorted(times)):
            kill = bisect.bisect_left(kills, before)
            if kill < len(kills) and kills[kill] <= again:
                per_kill[kill] += 1
            else:
                unexplained += 1
    return per_kill, unexplained


def summary(
    engine: Engine,
    load: SteadyLoad,
    received: dict[str, list[float]],
    worker_kills: list[float],
    faults: Counter[str],
    seed: int,
    bound: int,
    poisoned: Collection[int] = (),
) -> dict[str, Any]:
    """The figures of a run. ``bound``: the duplicates one worker kill may cause (the worker's
    concurrency); ``poisoned``: the request indexes whose input PostgreSQL cannot store, each
    to be refused alone with 422."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT n.id AS notification_id, d.id AS delivery_id, d.status, d.error_code,"
                " d.last_error FROM notification n JOIN delivery d ON d.notification_id = n.id"
            )
        ).all()
    by_notification = {str(r.notification_id): r for r in rows}
    missing = [i for i in load.accepted.values() if i not in by_notification]
    unfinished = [r for r in rows if r.status not in TERMINAL]
    sent_never_received = [
        r for r in rows if r.status == "SENT" and not received.get(str(r.delivery_id))
    ]
    # Every delivery a stand-in accepted, including any no delivery row accounts for.
    sent = {str(r.delivery_id) for r in rows if r.status == "SENT"}
    received_not_sent = [i for i in received if i not in sent]
    statuses = Counter(r.status for r in rows)
    per_kill, unexplained = duplicates_by_kill(received, worker_kills)
    poison = set(poisoned)
    final = {i: r for i, r in load.refusals.items() if r not in load.retried}
    unexpected = Counter(refusal for index, refusal in final.items() if index not in poison)
    # Requests the load gave up on: no answer in time, or only refusals that are retried.
    gave_up = [i for i in range(load.total) if i not in load.accepted and i not in final]
    return {
        "seed": seed,
        "requests": load.total,
        "accepted": len(load.accepted),
        "answered_non_2xx": {f"{s} {c}": n for (s, c), n in load.refused.items()},
        "unexpected_non_2xx": {f"{s} {c}": n for (s, c), n in unexpected.items()},
        "gave_up": len(gave_up),
        "refused_inputs": sum(1 for i in poison if final.get(i, (0, ""))[0] == 422),
        "poisoned_not_refused_422": sorted(
            i for i in poison if i in load.accepted or final.get(i, (422, ""))[0] != 422
        ),
        "deliveries": len(rows),
        "delivered": statuses["SENT"],
        "failed": statuses["FAILED"],
        "failed_without_reason": sum(
            1 for r in rows if r.status == "FAILED" and not (r.error_code and r.last_error)
        ),
        "duplicates": sum(len(times) - 1 for times in received.values()),
        "duplicates_per_worker_kill": per_kill,
        "duplicate_bound_per_kill": bound,
        "duplicates_without_a_kill": unexplained,
        "received_but_not_recorded_sent": len(received_not_sent),
        "lost": len(missing) + len(unfinished) + len(sent_never_received),
        "faults": dict(faults),
    }


def problems(figures: dict[str, Any]) -> list[str]:
    """What the figures break of the guarantees, in words; empty when the run passed."""
    found = []
    if figures["lost"]:
        found.append(f"lost {figures['lost']}")
    bound = figures["duplicate_bound_per_kill"]
    over = [n for n in figures["duplicates_per_worker_kill"] if n > bound]
    if over:
        found.append(f"worker kills over the bound of {bound}: {over}")
    if figures["duplicates_without_a_kill"]:
        found.append(f"duplicates without a kill: {figures['duplicates_without_a_kill']}")
    if figures["received_but_not_recorded_sent"]:
        found.append(f"received but not SENT: {figures['received_but_not_recorded_sent']}")
    if figures["failed_without_reason"]:
        found.append(f"FAILED without a reason: {figures['failed_without_reason']}")
    if figures["unexpected_non_2xx"]:
        found.append(f"unexpected answers: {figures['unexpected_non_2xx']}")
    if figures["poisoned_not_refused_422"]:
        found.append(f"bad inputs not refused 422: {figures['poisoned_not_refused_422'][:20]}")
    return found
