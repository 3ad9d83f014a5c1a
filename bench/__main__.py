"""``python -m bench``: every stage beside its floor, one run, a table, and bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench import floors, harness, peer, pipeline

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass(frozen=True)
class Row:
    figure: str
    ours: float
    floor_name: str
    floor: float
    target: str
    met: bool
    unit: str

    @property
    def ratio(self) -> float:
        return self.ours / self.floor if self.floor else float("nan")


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    redis_v = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, {pg}, Redis {redis_v}; "
        f"load average {load:.2f} at start; synchronous_commit on"
    )


def run(quick: bool) -> tuple[list[Row], list[str]]:
    runs = 1 if quick else 3
    seconds = 4 if quick else 8
    scale = 5 if quick else 1
    engine = harness.fresh_database()
    notes: list[str] = []
    rows: list[Row] = []

    def stage(name: str) -> None:
        print(f"… {name}", flush=True)

    stage("API floors (bare Flask, Flask + two INSERTs)")
    api_floors = [floors.api_floors(seconds) for _ in range(runs)]
    bare = sorted(b for b, _ in api_floors)[len(api_floors) // 2]
    naive_api = sorted(n for _, n in api_floors)[len(api_floors) // 2]
    stage("our API")
    configs = {2: 0.0, 3: 0.0, 4: 0.0}
    for workers in configs:
        configs[workers] = harness.median_of(
            runs, partial(pipeline.api_rate, engine, workers, seconds)
        )
    best_w, api = max(configs.items(), key=lambda kv: kv[1])
    notes.append(
        "API configurations (gunicorn gevent workers → accepted/s): "
        + ", ".join(f"{w} → {r:,.0f}" for w, r in configs.items())
    )
    rows.append(
        Row(
            f"API accepted/s, one channel ({best_w} gevent workers)",
            api,
            "bare Flask",
            bare,
            "≥ 40 %",
            api >= 0.4 * bare,
            "req/s",
        )
    )
    api_template = harness.median_of(
        runs, partial(pipeline.api_rate, engine, best_w, seconds, pipeline.TEMPLATE_BODY)
    )
    rows.append(
        Row(
            f"API accepted/s with a template ({best_w} gevent workers)",
            api_template,
            "the same without",
            api,
            "≥ 85 %",
            api_template >= 0.85 * api,
            "req/s",
        )
    )
    rows.append(
        Row(
            "API accepted/s vs naive Flask + 2 INSERTs",
            api,
            "naive API",
            naive_api,
            "—",
            True,
            "req/s",
        )
    )

    stage("database floors")
    commit = harness.median_of(runs, lambda: floors.commit_floor(engine))
    plain, notified = floors.notify_cost(engine)
    notes.append(
        f"NOTIFY cost, 16 concurrent INSERT+COMMIT clients: {plain:,.0f} commits/s without, "
        f"{notified:,.0f} with NOTIFY in the transaction (the relay is woken through Redis "
        "instead); single-connection commit floor "
        f"{commit:,.0f} rows/s"
    )
    claim = harness.median_of(runs, lambda: floors.claim_floor(engine, 50_000 // scale))
    stage("broker floor, naive relay")
    broker = harness.median_of(runs, lambda: floors.broker_floor(100_000 // scale))
    naive_relay = harness.median_of(runs, lambda: floors.naive_relay(5_000 // scale))
    notes.append(
        f"broker floor (LPUSH pipelines of 500): {broker:,.0f} msgs/s; naive relay "
        f"(apply_async one by one): {naive_relay:,.0f} tasks/s"
    )

    stage("our relay")
    relay_1 = harness.median_of(runs, lambda: pipeline.relay_rate(engine, 20_000 // scale, 1))
    relay_50 = harness.median_of(runs, lambda: pipeline.relay_rate(engine, 50_000 // scale, 50))
    rows.append(
        Row(
            "relay outbox rows/s, one process, RELAY_TASK_CHUNK=50",
            relay_50,
            "claim floor",
            claim,
            "≥ 30 %",
            relay_50 >= 0.3 * claim,
            "rows/s",
        )
    )
    rows.append(
        Row(
            "relay outbox rows/s, one process, RELAY_TASK_CHUNK=1",
            relay_1,
            "naive relay",
            naive_relay,
            "—",
            True,
            "rows/s",
        )
    )

    stage("naive worker, our worker")
    naive_worker = floors.naive_worker(5_000 // scale)
    # At the default concurrency, which is also the duplicate bound per worker killed: each
    # task's outcome is durable before its next send, so one commit serves at most that many.
    worker_50 = pipeline.worker_rate(engine, 20_000 // scale, 50, concurrency=8)
    worker_50_wide = pipeline.worker_rate(engine, 20_000 // scale, 50, concurrency=32)
    worker_1 = pipeline.worker_rate(engine, 3_000 // scale, 1, concurrency=8)
    worker_consent = pipeline.worker_rate(engine, 20_000 // scale, 50, concurrency=8, consent=True)
    worker_templated = pipeline.worker_rate(
        engine, 20_000 // scale, 50, concurrency=8, template=pipeline.BENCH_TEMPLATE
    )
    rows.append(
        Row(
            "worker deliveries/s, one process, chunks of 50, concurrency 8",
            worker_50,
            "naive Celery drain",
            naive_worker,
            "≥ 4×",
            worker_50 >= 4 * naive_worker,
            "deliveries/s",
        )
    )
    rows.append(
        Row(
            "worker deliveries/s, one process, chunks of 50, concurrency 32",
            worker_50_wide,
            "naive Celery drain",
            naive_worker,
            "—",
            True,
            "deliveries/s",
        )
    )
    rows.append(
        Row(
            "worker deliveries/s, profiles and preferences judged at claim, chunks of 50",
            worker_consent,
            "the same without",
            worker_50,
            "≥ 85 %",
            worker_consent >= 0.85 * worker_50,
            "deliveries/s",
        )
    )
    rows.append(
        Row(
            "worker deliveries/s rendering a two-variable template, chunks of 50",
            worker_templated,
            "the same pre-rendered",
            worker_50,
            "≥ 70 %",
            worker_templated >= 0.7 * worker_50,
            "deliveries/s",
        )
    )
    rows.append(
        Row(
            "worker deliveries/s, one process, chunks of 1, concurrency 8",
            worker_1,
            "naive Celery drain",
            naive_worker,
            "—",
            True,
            "deliveries/s",
        )
    )

    stage("peer (procrastinate)")
    peer_defer, peer_drain = peer.measure(5_000 // scale)
    notes.append(
        f"procrastinate 3.10: defer one by one {peer_defer:,.0f} jobs/s, "
        f"worker drain (concurrency 10) {peer_drain:,.0f} jobs/s"
    )
    stage("end to end, 100,000-row backlog")
    e2e = pipeline.end_to_end(engine, 100_000 // scale, 50, workers=1, concurrency=8)
    rows.append(
        Row(
            "end to end backlog → all SENT, 1 relay + 1 worker (concurrency 8)",
            e2e,
            "procrastinate drain",
            peer_drain,
            "≥ 2,000/s and ≥ 5×",
            e2e >= 2000 and e2e >= 5 * peer_drain,
            "deliveries/s",
        )
    )

    stage("live 500/s")
    # The worker's thread count by measurement, as the API's configuration above: its threads
    # and its consumer share one GIL, and on two cores fewer threads can mean less waiting.
    lives = {
        threads: pipeline.live(engine, 500, 20 if quick else 60, chunk=50, worker_threads=threads)
        for threads in (2, 4)
    }
    live_threads, live = min(lives.items(), key=lambda kv: kv[1].p50_ms)
    notes.append(
        "live 500/s by worker threads (one worker process): "
        + ", ".join(f"{t} → p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms" for t, r in lives.items())
    )
    rows.append(
        Row(
            f"live 500/s: accept → provider p50 (ms), worker × {live_threads} threads",
            live.p50_ms,
            "target",
            20,
            "≤ 20 ms",
            live.p50_ms <= 20 and live.sent == live.accepted,
            "ms",
        )
    )
    rows.append(
        Row(
            f"live 500/s: accept → provider p99 (ms), worker × {live_threads} threads",
            live.p99_ms,
            "target",
            100,
            "≤ 100 ms",
            live.p99_ms <= 100,
            "ms",
        )
    )
    notes.append(
        f"live 500/s: offered {live.offered_per_second:.0f}/s, accepted "
        f"{live.accepted} at {live.achieved_per_second:.0f}/s, sent {live.sent}, "
        f"max {live.max_ms:.0f} ms"
    )
    stage("light 50/s")
    light = pipeline.live(engine, 50, 10 if quick else 20, chunk=50, worker_threads=live_threads)
    rows.append(
        Row(
            "light 50/s: accept → provider p99 (ms)",
            light.p99_ms,
            "target",
            50,
            "≤ 50 ms",
            light.p99_ms <= 50 and light.sent == light.accepted,
            "ms",
        )
    )
    notes.append(
        f"light 50/s: p50 {light.p50_ms:.1f} ms, max {light.max_ms:.0f} ms, "
        f"sent {light.sent}/{light.accepted}"
    )
    return rows, notes


BEGIN, END = "<!-- pipeline:begin -->", "<!-- pipeline:end -->"


def replace_section(document: str, section: str) -> str:
    """RESULTS.md with this benchmark's section replaced; other benchmarks' sections are kept."""
    if BEGIN in document and END in document:
        head, _, rest = document.partition(BEGIN)
        _, _, tail = rest.partition(END + "\n")
        return head + section + tail
    title = "# Benchmark results\n\n"
    body = document[len(title) :] if document.startswith(title) else document
    return title + section + "\n" + body


def table(rows: list[Row]) -> str:
    lines = [
        "| figure | ours | floor | floor value | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.figure} | {r.ours:,.1f} | {r.floor_name} | {r.floor:,.1f} | "
            f"{r.ratio:.2f} | {r.target} | {'yes' if r.met else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, single runs (a smoke test)")
    args = parser.parse_args()
    described = machine()
    started = time.perf_counter()
    rows, notes = run(args.quick)
    body = table(rows)
    elapsed = time.perf_counter() - started
    print("\n" + body + "\n")
    for note in notes:
        print(f"- {note}")
    if args.quick:
        return
    section = (
        f"{BEGIN}\n## The pipeline against its floors\n\n"
        "Written by `make bench` (`python -m bench`); every figure is measured in the same run "
        "as its floor, on the same machine. Medians of 3 where the stage is short.\n\n"
        f"**Run:** {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes.  \n"
        f"**Machine:** {described}.\n\n"
        f"{body}\n\n" + "\n".join(f"- {n}" for n in notes) + f"\n{END}\n"
    )
    RESULTS.write_text(replace_section(RESULTS.read_text() if RESULTS.exists() else "", section))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
