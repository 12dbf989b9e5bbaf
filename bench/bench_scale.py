"""Does a second worker process add throughput? 1 vs 2 workers on the same backlog.

    .venv/bin/python bench/bench_scale.py [--customers 3000] [--partitions 8] [--json FILE]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka). Each run gets a
deployment of its own (app id, topics, changelog, data directories), so the runs share
no state or offsets. Its workers (``trigger-sanity worker`` processes of one app id)
are started first and the benchmark waits until they have split the partitions
between them, so that no rebalance falls inside the measurement; then the same
generated history (same seed) is produced as fast as possible. Rate = input records /
(last decision's broker timestamp - first decision's); while the workers run, only the
output topics' end offsets are polled, the decisions are read after they stop. Prints
both rates, each worker's CPU seconds, the CPU per input record of all workers together
(what sizing a deployment needs) and the ratio; ``--features`` (bench/features.py)
runs with a feature set's policy, guarantee and input; writes JSON (default
bench/results/scale.json); asserts nothing. On a machine with fewer cores than workers
+ broker, the ratio measures the cores as much as the worker: the core count is printed
with it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import features
from common import (
    OUTPUT_ROLES,
    arguments,
    cpu_seconds,
    deployment,
    produce_backlog,
    run_queue_seconds,
    stamps,
    start_worker,
    stop_workers,
    write_result,
)
from kafka import KafkaConsumer, TopicPartition

from streams.settings import Settings

RECOVERED = re.compile(rb"state recovered: partitions \[([\d, ]*)\]")


def owned(log: Path) -> list[int] | None:
    """The partitions a worker says it owns in its latest ``state recovered`` line."""
    found = RECOVERED.findall(log.read_bytes())
    if not found:
        return None
    return [int(p) for p in found[-1].split(b",") if p.strip()]


def wait_for_split(
    logs: list[Path], procs: list[subprocess.Popen[bytes]], partitions: int, timeout: float
) -> list[list[int]]:
    """Until every worker owns some partitions and together exactly all of them, and that
    has held for a second (a rebalance in flight shows as an overlap or a gap)."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a worker exited: see {logs}")
        split = [owned(log) for log in logs]
        every = sorted(p for parts in split if parts for p in parts)
        if all(split) and every == list(range(partitions)):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 1.0:
                return [parts or [] for parts in split]
        else:
            stable_since = None
        time.sleep(0.1)  # polling the workers' logs until the group has settled
    raise SystemExit(f"the workers did not split {partitions} partitions: see {logs}")


def wait_for_outputs(
    settings: Settings, want: int, timeout: float, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Until the output topics hold ``want`` records, by their end offsets: reading the
    records themselves meanwhile would take CPU from the workers on a small machine
    (their timestamps are read once the workers are stopped)."""
    consumer = KafkaConsumer(**settings.kafka_consumer_kwargs())
    tps = [
        TopicPartition(settings.topics[r], p)
        for r in OUTPUT_ROLES
        for p in range(settings.partitions)
    ]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            if sum(consumer.end_offsets(tps).values()) >= want:
                return
            time.sleep(0.5)  # polling end offsets until every candidate is decided
    finally:
        consumer.close()


def run(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One deployment with ``workers`` worker processes; the backlog's decision rate."""
    # log level INFO: the "state recovered" lines say which partitions a worker owns
    chosen = features.feature_sets(args.features)[0] if args.features else None
    extra: dict[str, str] = {}
    if chosen is not None:
        policy = tmp / f"{features.label(chosen)}.toml"
        policy.write_text(features.policy_text(chosen))
        extra = {"policy_file": str(policy), "guarantee": features.guarantee(chosen)}
    env, settings = deployment(
        f"scale{workers}w", partitions=str(args.partitions), log_level="INFO", **extra
    )
    logs = [tmp / f"{settings.app_id}-{i}.log" for i in range(workers)]
    handles = [open(log, "wb") for log in logs]
    procs = [
        start_worker({**env, "TRIGGER_SANITY_DATA_DIR": str(tmp / f"{settings.app_id}-{i}")}, fh)
        for i, fh in enumerate(handles)
    ]
    try:
        split = wait_for_split(logs, procs, args.partitions, args.timeout)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        wait0 = [run_queue_seconds(p.pid) for p in procs]
        n, candidates = produce_backlog(settings, args.customers, features=chosen)
        wait_for_outputs(settings, candidates, args.timeout, procs)
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        waited = [run_queue_seconds(p.pid) - w for p, w in zip(procs, wait0, strict=True)]
    finally:
        stop_workers(procs)
        for fh in handles:
            fh.close()
    outputs = [settings.topics[r] for r in OUTPUT_ROLES]
    out = stamps(settings.bootstrap_servers, outputs, candidates, 60)
    span = (max(out) - min(out)) / 1000 if out else float("nan")
    result = {
        "workers": workers,
        "partitions_per_worker": split,
        "input_records": n,
        "candidates": candidates,
        "decisions": len(out),
        "first_to_last_s": span,
        "rate": n / span,
        "worker_cpu_s": cpu,
        "cpu_us_per_record": sum(cpu) / n * 1e6,
        "worker_waiting_for_cpu_s": waited,
    }
    print(
        f"{workers} worker(s) {split}: {len(out)}/{candidates} decisions in {span:.1f}s "
        f"first to last = {n / span:,.0f} input records/s; per worker CPU s "
        + ", ".join(f"{c:.1f}" for c in cpu)
        + f" ({sum(cpu) / n * 1e6:.0f} us per input record, all workers)"
        + ", ready but without a CPU s "
        + ", ".join(f"{w:.1f}" for w in waited),
        flush=True,
    )
    return result


def main() -> int:
    ap = arguments(__doc__, customers=3000, timeout=900, json_name="scale.json")
    features.add_argument(ap)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one = run(1, args, tmp)
        two = run(2, args, tmp)
    ratio = two["rate"] / one["rate"]
    print(f"\n{'workers':>7} {'records/s':>10} {'first to last s':>16} {'CPU us/record':>14}")
    for r in (one, two):
        print(
            f"{r['workers']:>7} {r['rate']:>10,.0f} {r['first_to_last_s']:>16.1f} "
            f"{r['cpu_us_per_record']:>14.0f}"
        )
    print(
        f"2 workers / 1 worker = {ratio:.2f}x ({os.cpu_count()} cores shared with the broker "
        "and the producer: with 2 cores, a second worker has no core of its own, so size a "
        "deployment from the CPU per record, not from this ratio)"
    )
    write_result(
        args.json,
        {
            "customers": args.customers,
            "partitions": args.partitions,
            "runs": [one, two],
            "ratio_2_over_1": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
