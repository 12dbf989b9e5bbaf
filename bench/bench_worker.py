"""End-to-end benchmark of the worker against a real broker.

    .venv/bin/python bench/bench_worker.py [--customers 2000] [--partitions 8]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka) on
LOCAL_KAFKA_PORT (default 9092). Produces a generated history into fresh
topics, then measures, in the same run:
- baseline: a plain kafka-python consumer reading the same input topics
  (what moving the bytes costs);
- the worker: start to the last decision, records/s, and the time each
  candidate was held (receipt to decision) for triggers without a settle
  delay, as percentiles.
Prints numbers and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.admin import create_topics
from streams.generator import generate
from streams.history import write_history
from streams.replay import produce_history
from streams.settings import Settings, isolated_env, settings_from_env
from streams.topics import INPUT_ROLES

ROOT = Path(__file__).resolve().parents[1]

INPUTS = INPUT_ROLES


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def bootstrap() -> str:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given
    port = os.environ.get("LOCAL_KAFKA_PORT", "9092")
    tool = ROOT / "tools" / "kafka" / "local_kafka.py"
    subprocess.run([sys.executable, str(tool), "start", "--port", port], check=True)
    return f"127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(
    settings: Settings,
    roles: tuple[str, ...],
    want: int,
    timeout: float,
    stamps: list[int] | None = None,
) -> list[bytes]:
    """Read ``want`` records of the topics from the beginning; their broker timestamps
    (producer CreateTime: when the worker sent each) go to ``stamps`` if given."""
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=300,
        **settings.kafka_consumer_kwargs(),  # type: ignore[arg-type]
    )
    tps = [TopicPartition(settings.topics[r], p) for r in roles for p in range(settings.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for r in consumer:
            out.append(r.value)
            if stamps is not None:
                stamps.append(r.timestamp)
    consumer.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="run the worker under py-spy (if installed) and write collapsed stacks to FILE",
    )
    ap.add_argument("--log-level", default="WARNING", help="the worker's log level")
    ap.add_argument("--log", metavar="FILE", help="keep the worker's log in FILE")
    ap.add_argument("--timeline", action="store_true", help="also print decisions per half second")
    args = ap.parse_args()

    run = f"bench{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_SANITY_")}
    env.update(
        isolated_env(run, bootstrap(), partitions=str(args.partitions), log_level=args.log_level)
    )
    settings = settings_from_env(env)
    create_topics(settings, log=False, configs={"retention.ms": "-1"})

    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "h.jsonl"
        records = generate(args.customers, seed=5)
        write_history(history, records)
        candidates = sum(1 for r in records if r["topic"] == "outbound")
        producer = KafkaProducer(
            linger_ms=50, batch_size=512 * 1024, **settings.kafka_producer_kwargs()
        )
        t0 = time.perf_counter()
        n, _bad = produce_history(history, producer, {r: settings.topics[r] for r in INPUTS})
        producer.close()
        print(f"produced {n} records ({candidates} candidates) in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        got = drain(settings, INPUTS, n, args.timeout)
        base = time.perf_counter() - t0
        rate = len(got) / base
        print(f"baseline: plain consumer read {len(got)} records in {base:.1f}s ({rate:,.0f}/s)")

        log = open(args.log or Path(tmp) / "worker.log", "wb")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "streams.cli", "worker"]
        if args.profile:
            cmd = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "-r",
                "200",
                "-o",
                args.profile,
                "--",
                *cmd,
            ]
        worker = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            stamps: list[int] = []
            out = drain(settings, ("send_queue", "suppressed"), candidates, args.timeout, stamps)
            took = time.perf_counter() - t0
            cpu = cpu_seconds(worker.pid)
        finally:
            if args.profile:  # stop the worker under py-spy: py-spy then writes the file
                subprocess.run(["pkill", "-TERM", "-P", str(worker.pid)], check=False)
            else:
                worker.terminate()
            worker.wait(timeout=60)
            log.close()
    held = []
    for raw in out:
        v = orjson.loads(raw)
        if "sanity" in v and v["trigger"] != "abandoned_cart":
            held.append(v["sanity"]["held_ms"])
    span = (max(stamps) - min(stamps)) / 1000 if stamps else float("nan")
    print(
        f"worker: {len(out)} decisions for {n} records in {took:.1f}s incl. startup "
        f"({n / took:,.0f} records/s); ratio to the plain consumer {took / base:.1f}x the time"
    )
    print(f"worker CPU: {cpu:.1f}s user+system ({cpu / n * 1e6:.0f} us per input record)")
    print(
        f"worker, first decision to last: {span:.1f}s ({n / span:,.0f} input records/s; "
        f"{rate / (n / span):.1f}x slower than the plain consumer)"
    )
    print(
        f"held time of sent messages without settle delay (ms): p50 {pct(held, 0.5):.0f}  "
        f"p95 {pct(held, 0.95):.0f}  p99 {pct(held, 0.99):.0f}  "
        "(an all-at-once backlog: includes queueing)"
    )
    if args.timeline and stamps:
        t0 = min(stamps)
        per: dict[int, int] = {}
        for s in stamps:
            per[(s - t0) // 500] = per.get((s - t0) // 500, 0) + 1
        print("decisions per 0.5 s:", " ".join(str(per.get(i, 0)) for i in range(max(per) + 1)))
    return 0 if len(out) >= candidates else 1


if __name__ == "__main__":
    sys.exit(main())
