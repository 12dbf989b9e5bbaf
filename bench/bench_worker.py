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

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import (
    OUTPUT_ROLES,
    arguments,
    cpu_seconds,
    deployment,
    drain,
    pct,
    produce_backlog,
    start_worker,
    stop_worker,
)

from streams.contract.topics import INPUT_ROLES


def main() -> int:
    ap = arguments(__doc__, customers=2000, timeout=900)
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="run the worker under py-spy (if installed) and write collapsed stacks to FILE",
    )
    ap.add_argument("--log-level", default="WARNING", help="the worker's log level")
    ap.add_argument("--log", metavar="FILE", help="keep the worker's log in FILE")
    ap.add_argument("--timeline", action="store_true", help="also print decisions per half second")
    args = ap.parse_args()

    env, settings = deployment("bench", partitions=str(args.partitions), log_level=args.log_level)
    t0 = time.perf_counter()
    n, candidates = produce_backlog(settings, args.customers)
    print(f"produced {n} records ({candidates} candidates) in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    got = drain(settings, INPUT_ROLES, n, args.timeout)
    base = time.perf_counter() - t0
    rate = len(got) / base
    print(f"baseline: plain consumer read {len(got)} records in {base:.1f}s ({rate:,.0f}/s)")

    with tempfile.TemporaryDirectory() as tmp:
        log = open(args.log or Path(tmp) / "worker.log", "wb")
        t0 = time.perf_counter()
        prefix: list[str] = []
        if args.profile:
            spy = str(Path(sys.executable).with_name("py-spy"))
            prefix = [spy, "record", "--format", "raw", "-r", "200", "-o", args.profile, "--"]
        worker = start_worker(env, log, prefix)
        try:
            stamps: list[int] = []
            out = drain(settings, OUTPUT_ROLES, candidates, args.timeout, stamps)
            took = time.perf_counter() - t0
            cpu = cpu_seconds(worker.pid)
        finally:
            if args.profile:  # stop the worker under py-spy: py-spy then writes the file
                subprocess.run(["pkill", "-TERM", "-P", str(worker.pid)], check=False)
                worker.wait(timeout=60)
            else:
                stop_worker(worker)
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
