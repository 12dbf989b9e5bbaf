"""What a producer without murmur2 costs: decision latency, re-routed vs produced right.

    .venv/bin/python bench/bench_reroute.py [--customers 300] [--rate 400] [--partitions 8]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka). Two runs in the
same process, each on fresh topics with the worker already running: the same generated
history produced at a fixed rate (records/s), once with kafka-python (murmur2, the
contract's partitioner) and once with confluent-kafka's default partitioner (crc32:
most records land on the wrong partition, travel through the re-route topic, and every
partition waits for the others' progress markers). Latency of a candidate = its
``sanity.decided_at`` / ``decided_at`` minus the wall time it was handed to the
producer. Prints percentiles and the ratio crc32 / murmur2; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
from common import (
    OUTPUT_ROLES,
    Sender,
    bootstrap,
    decision_of,
    deployment,
    drain,
    kafka_python_sender,
    librdkafka_sender,
    pct,
    start_worker,
    stop_worker,
    wait_until_ready,
)

from streams.contract.history import HistoryRecord, read_history, write_history
from streams.offline.generator import generate
from streams.settings import Settings


def _murmur2(settings: Settings) -> Sender:
    return kafka_python_sender(settings)


def _crc32(settings: Settings) -> Sender:
    return librdkafka_sender(settings)  # librdkafka's default partitioner


def run(
    name: str,
    maker: Callable[[Settings], Sender],
    history: Path,
    args: argparse.Namespace,
    tmp: Path,
) -> list[float]:
    env, settings = deployment(
        "bench",
        args.bootstrap,
        partitions=str(args.partitions),
        log_level="INFO",
        idle_check_interval="0.2",
    )
    log = open(tmp / f"{name}.log", "wb")
    worker = start_worker(env, log)
    try:
        wait_until_ready(tmp / f"{name}.log", worker)
        sender = maker(settings)
        produced_at: dict[str, float] = {}
        n = 0
        start = time.time()
        for rec in read_history(history):
            assert isinstance(rec, HistoryRecord)
            ts = rec.record_ms if rec.record_ms is not None else rec.event_ms or 0
            if rec.topic == "outbound":
                produced_at.setdefault(orjson.loads(rec.value)["message_id"], time.time())
            sender.send(settings.topics[rec.topic], rec.key, rec.value, ts)
            n += 1
            ahead = n / args.rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing to a fixed input rate
        sender.close()
        out = drain(settings, OUTPUT_ROLES, len(produced_at), 300)
    finally:
        stop_worker(worker)
        log.close()
    lat = []
    for raw in out:
        mid, at = decision_of(orjson.loads(raw))
        if mid in produced_at:
            lat.append((datetime.fromisoformat(at).timestamp() - produced_at[mid]) * 1000)
    print(
        f"{name:>8}: {n} records at {args.rate:.0f}/s, {len(out)} decisions; latency ms "
        f"p50 {pct(lat, 0.5):.0f}  p95 {pct(lat, 0.95):.0f}  p99 {pct(lat, 0.99):.0f}"
    )
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--rate", type=float, default=400.0, help="input records/s")
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    args.bootstrap = bootstrap()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(os.environ.get("BENCH_TMP", d))
        history = tmp / "h.jsonl"
        write_history(history, generate(args.customers, seed=9))
        right = run("murmur2", _murmur2, history, args, tmp)
        wrong = run("crc32", _crc32, history, args, tmp)
    for p in (0.5, 0.95, 0.99):
        base = pct(right, p)
        ratio = pct(wrong, p) / base if base else float("nan")
        print(f"p{int(p * 100)}: crc32 / murmur2 = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
