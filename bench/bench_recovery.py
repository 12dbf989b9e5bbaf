"""State size per customer, and how long a worker takes to recover 1,000,000 customers.

    .venv/bin/python bench/bench_recovery.py [--customers 1000000] [--keep-logs DIR]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka) on
LOCAL_KAFKA_PORT (default 9092).

1. Realistic customer states: a generated history decided offline (the same core the
   worker runs); their encoded sizes are what the changelog and the table hold.
2. A changelog with ``--customers`` customers, each one of those states, written
   straight to the table's changelog topic (what a worker that had processed them
   would have left), partitioned like the worker writes it (murmur2 of the key).
3. A worker started on it: time from process start until its state is recovered
   (the "state recovered" log line: changelog loaded, held candidates and outboxes
   restored), of which the restore, its resident memory, and the longest event-loop
   stall it saw afterwards while sweeping every customer (``/stats/`` ``loop``).
4. The same with ``TRIGGER_SANITY_STORE=rocksdb://``: a first start (no local copy
   yet: the changelog is read whole and the copy written) and a restart on that copy
   (loads it and reads only the changelog written since: here, the first run's sweep).
   ``--stores memory`` leaves these out.

Prints a table and writes bench/results/recovery.json. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from common import arguments, deployment, pct, start_worker, stop_worker, wait_until_ready
from kafka.admin import NewTopic

from streams.contract import decode as codec
from streams.contract.history import HistoryRecord, read_history, write_history
from streams.contract.partitioning import partition_for
from streams.core.encoding import encode
from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.kafka.admin import admin_client
from streams.offline.generator import generate
from streams.settings import Settings


def template_states(customers: int) -> list[bytes]:
    """Encoded states of generated customers after their history, decided offline."""
    store = MemoryStore()
    engine = Engine(DEFAULT_POLICY, store)
    clock = engine.clock(0)
    for t in INPUT_KINDS:
        clock.set_idle(t, False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.jsonl"
        write_history(path, generate(customers, seed=11))
        for r in read_history(path):
            if not isinstance(r, HistoryRecord):
                continue
            ms = r.record_ms if r.record_ms is not None else (r.event_ms or 0)
            p = codec.decode(r.topic, r.value, ms, 0, DEFAULT_POLICY)
            if isinstance(p, codec.Parsed):
                engine.ingest(0, p.kind, p.customer_id, p.event_ms, p.fact, ms)
                for t in INPUT_KINDS:
                    clock.observe(t, p.event_ms)
                engine.release(0, 0)
        engine.flush(0)
    return [encode(st) for st in store.data.values()]


async def fill_changelog(
    settings: Settings, topic: str, customers: int, states: list[bytes]
) -> float:
    """``customers`` changelog records, one per customer; returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        acks=1,
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        parts = settings.partitions
        pending = []
        for i in range(customers):
            key = f"c-{i:07d}"
            fut = await producer.send(
                topic, states[i % len(states)], key.encode(), partition=partition_for(key, parts)
            )
            pending.append(fut)
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                print(f"\r  changelog: {i + 1:,}/{customers:,}", end="", flush=True)
        await asyncio.gather(*pending)
        print()
    finally:
        await producer.stop()
    return time.perf_counter() - t0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as r:
        return json.loads(r.read())


def run_worker(env: dict[str, str], log_path: Path, port: int, timeout: float) -> dict[str, Any]:
    """Start a worker, wait until its state is recovered and one sweep has run."""
    log = open(log_path, "wb")  # a kept log of an earlier run must not look ready
    t0 = time.perf_counter()
    worker = start_worker(env, log)
    out: dict[str, Any] = {}
    try:
        deadline = t0 + timeout
        wait_until_ready(log_path, worker, timeout)
        out["recovery_s"] = time.perf_counter() - t0
        out["rss_bytes"] = rss_bytes(worker.pid)
        while time.perf_counter() < deadline:
            s = stats(port)
            if s["engine"].get("sweeps", 0) >= 1:
                out["customers"] = s["customers"]
                out["loop"] = s["loop"]
                break
            time.sleep(0.5)  # polling the stats page
    finally:
        stop_worker(worker, timeout=120)
        log.close()
    found = LOADED.search(log_path.read_text(errors="replace"))
    if found:
        out["changelog_records_read"] = int(found[1])
        out["from_local_copy"] = int(found[2])
        out["load_s"] = float(found[3])
    return out


LOADED = re.compile(
    r"loaded (\d+) changelog records and (\d+) from the local copy, of \d+ partition\(s\), "
    r"in ([\d.]+) s"
)


def longest_insert_ms(customers: int, partitions: int) -> float:
    """The longest single insertion while filling the memory store's mapping with
    ``customers`` keys, as one dict (``partitions`` 1) or split by partition
    (``PartitionedData``): a dict that grows past a size copies every entry in one
    piece, and the event loop waits meanwhile."""
    from streams.worker.changelog import PartitionedData

    data = PartitionedData(partitions)
    parts = [data.part(p) for p in range(partitions)]
    value = b"x" * 900
    worst = 0.0
    perf = time.perf_counter
    for i in range(customers):
        key = f"c-{i}".encode()
        part = parts[i % partitions]  # the load fills each partition's dict in turn
        t0 = perf()
        part[key] = value
        worst = max(worst, perf() - t0)
    return worst * 1000


def main() -> int:
    ap = arguments(__doc__, customers=1_000_000, timeout=900, json_name="recovery.json")
    ap.add_argument("--keep-logs", metavar="DIR", help="keep worker logs and stores in DIR")
    ap.add_argument(
        "--stores",
        default="memory,rocksdb",
        help="which stores to run, comma-separated (default memory,rocksdb)",
    )
    args = ap.parse_args()

    states = template_states(400)
    sizes = [len(s) for s in states]
    print(
        f"state bytes per customer ({len(states)} generated customers after their history): "
        f"mean {statistics.mean(sizes):.0f}  p50 {pct(sizes, 0.5)}  p99 {pct(sizes, 0.99)}  "
        f"max {max(sizes)}"
    )

    split = {n: longest_insert_ms(args.customers, n) for n in (1, args.partitions)}
    print(
        f"memory store, longest single insertion filling {args.customers:,} keys: one dict "
        f"{split[1]:.1f} ms, split by partition ({args.partitions}) "
        f"{split[args.partitions]:.1f} ms ({split[1] / max(split[args.partitions], 1e-3):.1f}x)"
    )

    port = 6300 + os.getpid() % 500
    base, settings = deployment(
        "recov",
        partitions=str(args.partitions),
        log_level="INFO",
        web_enabled="true",
        web_port=str(port),
        sweep_interval="5",
    )
    run = settings.app_id
    changelog = f"{run}-customers-changelog"
    admin = admin_client(settings)
    admin.create_topics(
        [NewTopic(changelog, args.partitions, 1, topic_configs={"cleanup.policy": "compact"})]
    )
    admin.close()
    took = asyncio.run(fill_changelog(settings, changelog, args.customers, states))
    print(f"changelog: {args.customers:,} customers written in {took:.1f}s")

    results: dict[str, Any] = {
        "customers": args.customers,
        "longest_insert_ms": {"one_dict": split[1], "per_partition": split[args.partitions]},
        "state_bytes": {
            "mean": statistics.mean(sizes),
            "p50": pct(sizes, 0.5),
            "p99": pct(sizes, 0.99),
            "max": max(sizes),
        },
        "runs": {},
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep_logs:
            tmp = args.keep_logs
            Path(tmp).mkdir(parents=True, exist_ok=True)
        stores = [s.strip() for s in args.stores.split(",") if s.strip()]
        plan: list[tuple[str, str, dict[str, str]]] = []
        if "memory" in stores:
            plan.append(("memory", "start", {}))
        if "rocksdb" in stores:
            rocks = {
                "TRIGGER_SANITY_STORE": "rocksdb://",
                "TRIGGER_SANITY_DATA_DIR": str(Path(tmp) / "rocksdb-data"),
            }
            plan.append(("rocksdb", "first start (no copy)", rocks))
            plan.append(("rocksdb", "restart (copy + tail)", rocks))
        for i, (store, label, extra) in enumerate(plan):
            print(f"{store}: {label} ...", flush=True)
            env = {**base, **extra}
            r = run_worker(env, Path(tmp) / f"{i}-{store}.log", port, args.timeout)
            results["runs"][f"{store} {label}"] = r
            rows.append((store, label, r))
    print()
    print(
        "| store | start | recovery s | changelog records read / from local copy | load s "
        "| customers | RSS MB | bytes/customer (RSS) "
        "| of which restore s | sweep s | longest step ms: restore / sweep "
        "| longest loop stall ms (loop CPU over the probe interval): "
        "starting (load) / restoring / sweeping / running |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for store, label, r in rows:
        loop = r.get("loop", {})
        print(
            f"| {store} | {label} | {r['recovery_s']:.1f} | "
            f"{r.get('changelog_records_read', 0):,} / {r.get('from_local_copy', 0):,} | "
            f"{r.get('load_s', float('nan')):.1f} | {r.get('customers', 0):,} | "
            f"{r['rss_bytes'] / 2**20:,.0f} | {r['rss_bytes'] / max(1, args.customers):,.0f} | "
            f"{loop.get('last_restore_s', float('nan')):.1f} | "
            f"{loop.get('last_sweep_s', float('nan')):.1f} | "
            f"{loop.get('longest_step_ms_restoring', 0):.0f} / "
            f"{loop.get('longest_step_ms_sweeping', 0):.0f} | "
            + " / ".join(
                f"{loop.get(f'max_stall_ms_{ph}', 0):.0f} "
                f"({loop.get(f'max_stall_ms_{ph}_cpu_ms', 0):.0f})"
                for ph in ("starting", "restoring", "sweeping", "running")
            )
            + " |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
