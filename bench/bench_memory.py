"""The worker's resident memory per customer, measured live, and whether it grows when
the same history is produced again and again.

    .venv/bin/python bench/bench_memory.py [--customers 20000] [--passes 10]
        [--caches 20000,2000,0]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka) on
LOCAL_KAFKA_PORT (default 9092). For each ``TRIGGER_SANITY_STATE_CACHE`` size: a
worker on fresh topics; a generated realistic history of ``--customers`` customers
produced ``--passes`` times (``trigger-sanity replay``'s producer: every pass a second,
third... copy of every message id), waiting after each pass until every candidate is
decided; the worker's RSS then, in total and per customer above its RSS before any input
(Python, faust and the clients), and its CPU per input record; after the last pass, the
RSS again after the worker's next sweep (which prunes and writes back every customer:
what it shows is how far the allocator's high-water mark rises when it does).
A worker that holds all customers decoded (the cache at least the customer count)
shows what the cache costs per customer; a small cache shows the encoded state alone.

Prints a table and writes bench/results/memory.json. Asserts nothing.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    arguments,
    cpu_seconds,
    deployment,
    start_worker,
    stop_worker,
    wait_until_ready,
    write_result,
)
from kafka import KafkaConsumer, TopicPartition

from streams.contract.topics import INPUT_ROLES
from streams.offline.scenarios import write_realistic
from streams.ops.produce import produce_history
from streams.settings import Settings
from streams.worker.heap import Heap


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def decided(settings: Settings) -> int:
    """Decisions out so far (send-queue + suppressed), from their end offsets."""
    consumer = KafkaConsumer(**settings.kafka_consumer_kwargs())
    try:
        tps = [
            TopicPartition(settings.topics[r], p)
            for r in ("send_queue", "suppressed")
            for p in range(settings.partitions)
        ]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def one_cache(cache: int, history: Path, candidates: int, args: Any) -> list[dict[str, Any]]:
    from kafka import KafkaProducer

    env, settings = deployment(
        "mem",
        partitions=str(args.partitions),
        state_cache=str(cache),
        web_enabled="false",
        sweep_interval=str(args.sweep_interval),
    )
    with tempfile.NamedTemporaryFile(prefix="mem-worker-", suffix=".log") as log:
        proc = start_worker(env, log)
        rows: list[dict[str, Any]] = []
        try:
            wait_until_ready(Path(log.name), proc)
            idle = rss_bytes(proc.pid)  # the worker with no customer: Python, faust, clients
            names = {r: settings.topics[r] for r in INPUT_ROLES}
            producer = KafkaProducer(linger_ms=20, **settings.kafka_producer_kwargs())
            sent = 0
            for n in range(1, args.passes + 1):
                cpu0 = cpu_seconds(proc.pid)
                got, _bad = produce_history(history, producer, names, partitions=args.partitions)
                sent += got
                deadline = time.monotonic() + args.timeout
                while decided(settings) < candidates * n:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"worker did not decide pass {n} (see its log)")
                    time.sleep(0.5)  # polling the output topics, bounded by the deadline
                rss = rss_bytes(proc.pid)
                # once caught up after a burst the worker gives freed memory back
                # (streams.worker.heap): what it keeps then, beside the peak above
                trimmed = None
                if Heap().can_trim:
                    wait_until = time.monotonic() + 15
                    while time.monotonic() < wait_until:
                        if Path(log.name).read_bytes().count(b"after the burst:") >= n:
                            trimmed = rss_bytes(proc.pid)
                            break
                        time.sleep(0.2)  # polling the worker's log, bounded
                row = {
                    "cache": cache,
                    "pass": n,
                    "rss_mb": round(rss / 2**20, 1),
                    "idle_rss_mb": round(idle / 2**20, 1),
                    "bytes_per_customer": round(rss / args.customers),
                    "bytes_per_customer_above_idle": round((rss - idle) / args.customers),
                    "cpu_us_per_record": round((cpu_seconds(proc.pid) - cpu0) / got * 1e6),
                }
                if trimmed is not None:
                    row["trimmed_rss_mb"] = round(trimmed / 2**20, 1)
                    row["trimmed_bytes_per_customer_above_idle"] = round(
                        (trimmed - idle) / args.customers
                    )
                rows.append(row)
                print(
                    f"  cache {cache:>6}  pass {n:>2}: RSS {row['rss_mb']:>7} MB "
                    f"(idle {row['idle_rss_mb']} MB; {row['bytes_per_customer_above_idle']:,} "
                    f"B/customer above it), "
                    f"{row['cpu_us_per_record']} us CPU per input record"
                    + (
                        f"; once caught up and trimmed: {row['trimmed_rss_mb']} MB "
                        f"({row['trimmed_bytes_per_customer_above_idle']:,} B/customer)"
                        if trimmed is not None
                        else ""
                    ),
                    flush=True,
                )
            producer.close()
            # a worker that can give freed memory back does so right after each sweep
            # (streams.worker.heap) and logs it: measure after that
            done = b"after the sweep:" if Heap().can_trim else b"sweep:"
            swept = Path(log.name).read_bytes().count(done)
            deadline = time.monotonic() + 3 * args.sweep_interval + 60
            while Path(log.name).read_bytes().count(done) <= swept:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the worker did not sweep (see its log)")
                time.sleep(0.5)  # polling the worker's log for the next sweep
            rss = rss_bytes(proc.pid)
            rows[-1]["after_sweep_rss_mb"] = round(rss / 2**20, 1)
            rows[-1]["after_sweep_bytes_per_customer_above_idle"] = round(
                (rss - idle) / args.customers
            )
            print(
                f"  cache {cache:>6}  after a sweep: RSS {rows[-1]['after_sweep_rss_mb']} MB "
                f"({rows[-1]['after_sweep_bytes_per_customer_above_idle']:,} B/customer above "
                "idle)",
                flush=True,
            )
        finally:
            stop_worker(proc)
        if args.restart:
            # the same state, recovered from the changelog by a fresh process: what the
            # customers' states take without anything the live run left behind
            with tempfile.NamedTemporaryFile(prefix="mem-worker-", suffix=".log") as log2:
                proc = start_worker(env, log2)
                try:
                    wait_until_ready(Path(log2.name), proc, timeout=args.timeout)
                    rss = rss_bytes(proc.pid)
                finally:
                    stop_worker(proc)
            rows[-1]["restarted_rss_mb"] = round(rss / 2**20, 1)
            rows[-1]["restarted_bytes_per_customer_above_idle"] = round(
                (rss - idle) / args.customers
            )
            print(
                f"  cache {cache:>6}  restarted: RSS {rows[-1]['restarted_rss_mb']} MB "
                f"({rows[-1]['restarted_bytes_per_customer_above_idle']:,} B/customer above "
                "idle)",
                flush=True,
            )
    return rows


def main() -> int:
    ap = arguments(__doc__, customers=20_000, timeout=600, json_name="memory.json")
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument(
        "--restart",
        action="store_true",
        help="after the last pass, restart the worker and measure its RSS once recovered",
    )
    ap.add_argument("--caches", default="20000,2000,0", help="state cache sizes to run")
    ap.add_argument(
        "--sweep-interval",
        type=float,
        default=30.0,
        help="the worker's TRIGGER_SANITY_SWEEP_INTERVAL; after the last pass the RSS is "
        "measured again after the next sweep (default 30)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        history = Path(tmp) / "history.jsonl"
        records, candidates = write_realistic(
            history, Path(tmp) / "truth.jsonl", args.customers, seed=20
        )
        print(f"history: {records:,} records, {candidates:,} candidates, "
              f"{args.customers:,} customers; {args.passes} passes")  # fmt: skip
        rows: list[dict[str, Any]] = []
        for cache in (int(c) for c in args.caches.split(",")):
            rows += one_cache(cache, history, candidates, args)
    print()
    print("| state cache | idle RSS | RSS after pass 1 | after the last | growth "
          "| B/customer above idle (pass 1) | after the last and a sweep "
          "| CPU us/record (pass 1, last) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cache in dict.fromkeys(r["cache"] for r in rows):
        mine = [r for r in rows if r["cache"] == cache]
        first, last = mine[0], mine[-1]
        print(
            f"| {cache:,} | {first['idle_rss_mb']} MB | {first['rss_mb']} MB | "
            f"{last['rss_mb']} MB | {last['rss_mb'] - first['rss_mb']:+.1f} MB | "
            f"{first['bytes_per_customer_above_idle']:,} | "
            f"{last['after_sweep_rss_mb']} MB "
            f"({last['after_sweep_bytes_per_customer_above_idle']:,} B/customer) | "
            f"{first['cpu_us_per_record']}, {last['cpu_us_per_record']} |"
        )
    write_result(args.json, {"customers": args.customers, "passes": args.passes, "runs": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
