"""The worker side by side with the ceiling and its peers, on the same backlog.

    .venv/bin/python bench/bench_peers.py [--customers 1500] [--partitions 8] [--json FILE]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka). One generated
history is produced once into fresh input topics; then, one after the other, each
contender reads the whole backlog from the beginning with its own consumer group:

- ceiling: a raw aiokafka consume loop over the five input topics (no processing);
- naive faust: one agent keeping a per-customer counter in a changelogged table and
  producing one record per input (bench/peers/naive_faust.py): what a straightforward
  faust app costs on this machine;
- faust pass-through: a faust agent with ``take_events`` batches, no state, one output
  per input (bench/peers/faust_passthrough.py): the floor of a worker built on faust's
  agents and streams;
- faust batch shell: faust's consumer with the worker's batch shell (streams.kafka.batch_consumer),
  no state, one output per input (bench/peers/faust_batch_shell.py): the floor of the
  worker's own shell;
- quix-streams: the same counter (bench/peers/quix_counter.py), run by ``--quix-python``
  (an interpreter with ``quixstreams`` installed; ``make bench-peers`` makes one in
  .cache/quix-venv: quix-streams pins an older pydantic than this project uses);
- trigger-sanity: the worker, deciding every candidate.

Rates are input records / (last output's timestamp - first output's timestamp), never
from process start; the worker's outputs are its decisions, which start only once
stream time allows, so its rate is also given from its first read (its first
changelog write) to its last decision. Prints a table and ratios; writes JSON.
Asserts nothing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AIOTopicPartition
from common import (
    OUTPUT_ROLES,
    ROOT,
    arguments,
    deployment,
    produce_backlog,
    stamps,
    start_worker,
    stop_worker,
    write_result,
)
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.contract.topics import INPUT_ROLES
from streams.settings import Settings


async def _ceiling(bootstrap_servers: str, topics: list[str], want: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    n = 0
    try:
        meta = KafkaConsumer(bootstrap_servers=bootstrap_servers)
        tps = [
            AIOTopicPartition(t, p) for t in topics for p in sorted(meta.partitions_for_topic(t))
        ]
        meta.close()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        first = time.perf_counter()  # from the first fetch on: no group join in the way
        while n < want:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            n += sum(len(recs) for recs in batch.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - first)


def _peer(
    script: str, python: str, env: dict[str, str], output: str, want: int, tmo: float
) -> float | None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**env, "NAIVE_DATA_DIR": tmp}
        log = open(Path(tmp) / "peer.log", "wb")
        proc = subprocess.Popen(
            [python, str(ROOT / "bench" / "peers" / script), "worker", "-l", "warn"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            got = stamps(env["NAIVE_BOOTSTRAP"], [output], want, tmo, proc)
        finally:
            stop_worker(proc, timeout=30)
            log.close()
        if len(got) < want:
            tail = (Path(tmp) / "peer.log").read_text(errors="replace")[-2000:]
            print(f"{script}: only {len(got)} of {want} outputs\n{tail}", file=sys.stderr)
            return None
    return want / ((max(got) - min(got)) / 1000)


def _worker(
    settings: Settings, env: dict[str, str], n: int, candidates: int, tmo: float
) -> dict[str, float]:
    proc = start_worker(env)
    try:
        out = stamps(
            settings.bootstrap_servers,
            [settings.topics[r] for r in OUTPUT_ROLES],
            candidates,
            tmo,
            proc,
        )
    finally:
        stop_worker(proc)
    changelog = stamps(
        settings.bootstrap_servers, [f"{settings.app_id}-customers-changelog"], 1, 30
    )
    span = (max(out) - min(out)) / 1000
    from_read = (max(out) - min(changelog)) / 1000 if changelog else float("nan")
    return {"decisions_span_s": span, "rate": n / span, "rate_from_first_read": n / from_read}


def main() -> int:
    ap = arguments(__doc__, customers=1500, timeout=600, json_name="peers.json")
    ap.add_argument(
        "--quix-python",
        default=str(ROOT / ".cache" / "quix-venv" / "bin" / "python"),
        help="a Python with quixstreams installed (default: .cache/quix-venv, from "
        "`make bench-peers`); its row is left out when there is none",
    )
    args = ap.parse_args()

    env, settings = deployment("peers", partitions=str(args.partitions), log_level="WARNING")
    run = settings.app_id
    inputs = [settings.topics[r] for r in INPUT_ROLES]
    n, candidates = produce_backlog(settings, args.customers)
    print(f"backlog: {n} input records, {candidates} candidates, {args.partitions} partitions")

    peers = [
        ("naive faust counter", "naive_faust.py", sys.executable),
        ("faust pass-through (batched, no state)", "faust_passthrough.py", sys.executable),
        ("faust batch shell (the worker's, no state)", "faust_batch_shell.py", sys.executable),
    ]
    if Path(args.quix_python).exists():
        peers.append(("quix-streams counter", "quix_counter.py", args.quix_python))
    else:
        print(f"no {args.quix_python}: the quix-streams row is left out (make bench-peers)")
    outs = {script: f"{run}.{script.split('.')[0]}-out" for _, script, _ in peers}
    admin = KafkaAdminClient(**settings.kafka_client_kwargs())
    # Append time: quix-streams copies the input's timestamp (old event times) to outputs.
    append = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics(
        [NewTopic(o, args.partitions, 1, topic_configs=append) for o in outs.values()]
    )
    admin.close()

    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    rows["ceiling (raw aiokafka loop)"] = asyncio.run(
        _ceiling(settings.bootstrap_servers, inputs, n)
    )
    print(f"ceiling measured ({time.perf_counter() - t0:.0f}s)", flush=True)
    for label, script, python in peers:
        out = outs[script]
        t0 = time.perf_counter()
        peer_env = {
            **env,
            "NAIVE_APP_ID": f"{run}-{script.split('.')[0].replace('_', '-')}",
            "NAIVE_BOOTSTRAP": settings.bootstrap_servers,
            "NAIVE_PARTITIONS": str(args.partitions),
            "NAIVE_INPUTS": ",".join(inputs),
            "NAIVE_OUTPUT": out,
        }
        rows[label] = _peer(script, python, peer_env, out, n, args.timeout)
        print(f"{label} measured ({time.perf_counter() - t0:.0f}s)", flush=True)
    worker = _worker(settings, env, n, candidates, args.timeout)
    rows["trigger-sanity worker (first decision to last)"] = worker["rate"]
    rows["trigger-sanity worker (first read to last decision)"] = worker["rate_from_first_read"]

    ceiling = rows["ceiling (raw aiokafka loop)"]
    naive = rows["naive faust counter"]
    print(f"\n{'contender':<52} {'records/s':>10} {'/ceiling':>9} {'/naive':>7}")
    for label, rate in rows.items():
        if rate is None:
            print(f"{label:<52} {'failed':>10}")
            continue
        vs_naive = f"{rate / naive:.2f}" if naive else "-"
        print(f"{label:<52} {rate:>10,.0f} {rate / ceiling:>9.3f} {vs_naive:>7}")
    result = {
        "customers": args.customers,
        "partitions": args.partitions,
        "input_records": n,
        "candidates": candidates,
        "records_per_s": rows,
    }
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
