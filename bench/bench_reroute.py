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
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
from bench_worker import ROOT, bootstrap, drain, pct  # type: ignore[import-not-found]

from streams.admin import create_topics
from streams.generator import generate
from streams.history import HistoryRecord, read_history, write_history
from streams.settings import Settings, isolated_env, settings_from_env


def _send_kafka_python(settings: Settings) -> tuple[Callable[..., None], Callable[[], None]]:
    from kafka import KafkaProducer

    p = KafkaProducer(linger_ms=2, **settings.kafka_producer_kwargs())  # type: ignore[arg-type]

    def send(topic: str, key: bytes | None, value: bytes, ts: int) -> None:
        p.send(topic, key=key, value=value, timestamp_ms=ts)

    return send, p.close


def _send_librdkafka(settings: Settings) -> tuple[Callable[..., None], Callable[[], None]]:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 2, "acks": "all"})

    def send(topic: str, key: bytes | None, value: bytes, ts: int) -> None:
        p.produce(topic, key=key, value=value, timestamp=ts)
        p.poll(0)

    return send, lambda: p.flush() and None


def run(
    name: str,
    maker: Callable[[Settings], tuple[Callable[..., None], Callable[[], None]]],
    history: Path,
    args: argparse.Namespace,
    tmp: Path,
) -> list[float]:
    tag = f"bench{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_SANITY_")}
    env.update(
        isolated_env(
            tag,
            args.bootstrap,
            partitions=str(args.partitions),
            log_level="INFO",
            idle_check_interval="0.2",
        )
    )
    env["PYTHONUNBUFFERED"] = "1"  # the log is read while the worker runs
    settings = settings_from_env(env)
    create_topics(settings, log=False, configs={"retention.ms": "-1"})
    log = open(tmp / f"{name}.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 120
        while b"state recovered" not in (tmp / f"{name}.log").read_bytes():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the worker did not start: see {tmp / f'{name}.log'}")
            time.sleep(0.2)  # polling the worker's log until it owns its partitions
        send, close = maker(settings)
        produced_at: dict[str, float] = {}
        n = 0
        start = time.time()
        for rec in read_history(history):
            assert isinstance(rec, HistoryRecord)
            ts = rec.record_ms if rec.record_ms is not None else rec.event_ms or 0
            if rec.topic == "outbound":
                produced_at.setdefault(orjson.loads(rec.value)["message_id"], time.time())
            send(settings.topics[rec.topic], rec.key, rec.value, ts)
            n += 1
            ahead = n / args.rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing to a fixed input rate
        close()
        out = drain(settings, ("send_queue", "suppressed"), len(produced_at), 300)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    lat = []
    for raw in out:
        v = orjson.loads(raw)
        mid = v["message_id"] if "sanity" in v else v["message"]["message_id"]
        at = v["sanity"]["decided_at"] if "sanity" in v else v["decided_at"]
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
        right = run("murmur2", _send_kafka_python, history, args, tmp)
        wrong = run("crc32", _send_librdkafka, history, args, tmp)
    for p in (0.5, 0.95, 0.99):
        base = pct(right, p)
        ratio = pct(wrong, p) / base if base else float("nan")
        print(f"p{int(p * 100)}: crc32 / murmur2 = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
