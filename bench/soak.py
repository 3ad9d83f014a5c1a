"""``python -m bench.soak``: a steady load through the whole system for 10 minutes, recording
each process's memory (RSS) every minute and the outbox lag; memory must stay flat (at most
10 % growth after the first minute's warm-up) and the lag bounded. Results go to RESULTS.md."""

from __future__ import annotations

import argparse
import os
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from app.api.keys import create_api_key
from bench import harness, pipeline
from bench.__main__ import RESULTS

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (gunicorn's workers)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending.extend(int(c) for c in children)
        except FileNotFoundError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    engine = harness.fresh_database()
    key = create_api_key(engine, "soak").key
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    samples: list[dict[str, float]] = []
    with ExitStack() as stack:
        processes = {
            "api": stack.enter_context(pipeline._api(2)),
            "worker": stack.enter_context(pipeline._worker("soak-worker", 4)),
            "relay": stack.enter_context(pipeline._relay("soak-relay", RELAY_TASK_CHUNK="10")),
        }
        harness.wait_http(f"http://127.0.0.1:{pipeline.API_PORT}/api/v1/health/live")
        total = int(args.rate * args.minutes * 60)
        load = threading.Thread(target=pipeline._open_loop, args=(total, args.rate, headers))
        started = time.monotonic()
        load.start()
        for minute in range(args.minutes + 1):
            time.sleep(max(0.0, started + minute * 60 - time.monotonic()))
            with engine.connect() as conn:
                lag = float(
                    conn.scalar(
                        text(
                            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(available_at)), 0)"
                            " FROM outbox_event WHERE status = 'PENDING'"
                        )
                    )
                )
                sent = int(conn.scalar(text("SELECT count(*) FROM delivery WHERE status = 'SENT'")))
            sample = {name: rss_mib(p.pid) for name, p in processes.items()}
            sample.update(minute=minute, lag=lag, sent=sent)
            samples.append(sample)
            print(
                f"minute {minute:2d}: " + ", ".join(f"{k} {v:,.1f}" for k, v in sample.items()),
                flush=True,
            )
        load.join()
    growth = {
        name: (samples[-1][name] - samples[1][name]) / samples[1][name] * 100
        for name in ("api", "relay", "worker")
    }
    flat = all(g <= 10 for g in growth.values())
    max_lag = max(s["lag"] for s in samples)
    rows = "\n".join(
        f"| {s['minute']:.0f} | {s['api']:.1f} | {s['relay']:.1f} | {s['worker']:.1f} | "
        f"{s['lag']:.2f} | {s['sent']:,.0f} |"
        for s in samples
    )
    section = (
        f"{BEGIN}\n## Soak: {args.rate:.0f} notifications/s for {args.minutes} minutes\n\n"
        "`python -m bench.soak` (API 2 gevent workers, one relay, one worker, no-op provider). "
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores.\n\n"
        "| minute | API RSS MiB (master + workers) | relay RSS MiB | worker RSS MiB "
        "| outbox lag s | sent |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"{rows}\n\nGrowth from minute 1 to the end: "
        + ", ".join(f"{k} {v:+.1f} %" for k, v in growth.items())
        + f" ({'flat, within 10 %' if flat else 'NOT flat'}); largest outbox lag "
        f"{max_lag:.2f} s.\n{END}\n"
    )
    document = RESULTS.read_text()
    if BEGIN in document:
        head, _, rest = document.partition(BEGIN)
        document = head + section + rest.partition(END + "\n")[2]
    else:
        document = document.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(document)
    print(section)


if __name__ == "__main__":
    main()
