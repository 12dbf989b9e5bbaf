"""End-to-end benchmark of the worker against a real broker.

    .venv/bin/python bench/bench_worker.py [--customers 2000] [--partitions 8]
        [--guarantee both|exactly_once|at_least_once] [--commit-interval 0.1]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka) on
LOCAL_KAFKA_PORT (default 9092). Produces a generated history into fresh
topics, then measures, in the same run:
- baseline: a plain kafka-python consumer reading the same input topics
  (what moving the bytes costs);
- the worker: start to the last decision, records/s, and the time each
  candidate was held (receipt to decision) for triggers without a settle
  delay, as percentiles; with exactly_once, the transactions it committed;
- by default both guarantees, each on its own identical backlog, and the ratio
  of their rates (read_committed readers throughout).
Prints numbers and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import features
import orjson
from common import (
    OUTPUT_ROLES,
    add_settings_argument,
    arguments,
    cpu_seconds,
    deployment,
    drain,
    pct,
    produce_backlog,
    settings_of,
    start_worker,
    stop_worker,
)

from streams.contract.topics import INPUT_ROLES
from streams.settings import Settings

GUARANTEES = ("exactly_once", "at_least_once")


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
    ap.add_argument(
        "--guarantee",
        default="both",
        choices=(*GUARANTEES, "both"),
        help="the delivery guarantee measured; both (default): exactly_once, then "
        "at_least_once on an identical backlog in the same run, and their ratio",
    )
    ap.add_argument(
        "--commit-interval", default="0.1", help="TRIGGER_SANITY_COMMIT_INTERVAL (seconds)"
    )
    ap.add_argument(
        "--input",
        default="tidy",
        choices=("tidy", "realistic", "links"),
        help="the backlog: tidy (generate, default), realistic (the field cases), links "
        "(the field cases with a third of the purchases by guests linked at checkout)",
    )
    ap.add_argument(
        "--policy",
        metavar="FILE",
        help="the worker's policy file (e.g. policies/example.toml: quiet hours and caps on)",
    )
    add_settings_argument(ap, "gc_threshold=0")
    features.add_argument(ap)
    args = ap.parse_args()
    overrides = settings_of(args)
    runs: list[tuple[str, str, frozenset[str] | None]] = []  # (label, guarantee, features)
    if args.features:
        for fs in features.feature_sets(args.features):
            runs.append((features.label(fs), features.guarantee(fs), fs))
    else:
        modes = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
        runs = [(mode, mode, None) for mode in modes]
    rates: dict[str, float] = {}
    base_rate = 0.0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, mode, chosen) in enumerate(runs):
            policy = args.policy and str(Path(args.policy).resolve())
            if chosen is not None:
                print(f"--- features {name} ({mode}), commit interval {args.commit_interval} s")
                policy = str(Path(tmp) / f"{name}.toml")
                Path(policy).write_text(features.policy_text(chosen))
            else:
                print(f"--- guarantee {mode}, commit interval {args.commit_interval} s")
            env, settings = deployment(
                "bench",
                partitions=str(args.partitions),
                log_level=args.log_level,
                guarantee=mode,
                commit_interval=args.commit_interval,
                web_enabled="true",
                web_port=str(free_port()),
                **({"policy_file": policy} if policy else {}),
                **overrides,
            )
            t0 = time.perf_counter()
            n, candidates = produce_backlog(
                settings, args.customers, kind=args.input, features=chosen
            )
            print(
                f"produced {n} records ({candidates} candidates) in {time.perf_counter() - t0:.1f}s"
            )
            if i == 0:
                t0 = time.perf_counter()
                got = drain(settings, INPUT_ROLES, n, args.timeout)
                base = time.perf_counter() - t0
                base_rate = len(got) / base
                print(
                    f"baseline: plain consumer read {len(got)} records in {base:.1f}s "
                    f"({base_rate:,.0f}/s)"
                )
            rate, done = _run(args, env, settings, n, candidates, base_rate)
            rates[name] = rate
            ok = ok and done
    if "exactly_once" in rates and "at_least_once" in rates:
        eo, al = rates["exactly_once"], rates["at_least_once"]
        print(
            f"exactly_once / at_least_once, first read to last decision: {eo:,.0f} / {al:,.0f} "
            f"input records/s = {eo / al:.2f}"
        )
    if "none" in rates and len(rates) > 1:
        print("\nfeature cost, first read to last decision (records/s, and against none):")
        for name, rate in rates.items():
            print(f"  {name:<14} {rate:>9,.0f}/s  {rate / rates['none']:.2f}x")
    return 0 if ok else 1


def _run(
    args: argparse.Namespace,
    env: dict[str, str],
    settings: Settings,
    n: int,
    candidates: int,
    base_rate: float,
) -> tuple[float, bool]:
    """One worker through the backlog: prints its numbers, gives its records/s from the
    first decision to the last and whether every decision came."""
    with tempfile.TemporaryDirectory() as tmp:
        log = open(args.log or Path(tmp) / "worker.log", "wb")
        t0 = time.perf_counter()
        prefix: list[str] = []
        if args.profile:
            spy = str(Path(sys.executable).with_name("py-spy"))
            prefix = [spy, "record", "--format", "raw", "-r", "200", "-o", args.profile, "--"]
        worker = start_worker(env, log, prefix)
        first = FirstRead(settings.web_port, worker.pid)
        txns: dict[str, Any] | None = None
        try:
            stamps: list[int] = []
            seen: list[float] = []
            out = drain(settings, OUTPUT_ROLES, candidates, args.timeout, stamps, seen)
            took = time.perf_counter() - t0
            cpu = cpu_seconds(worker.pid)
            first.stop()
            txns = _transactions(settings.web_port)
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
    visible = max(seen) - min(seen) if seen else float("nan")
    print(
        f"worker: {len(out)} decisions for {n} records in {took:.1f}s incl. startup "
        f"({n / took:,.0f} records/s); ratio to the plain consumer "
        f"{took / (n / base_rate):.1f}x the time"
    )
    print(f"worker CPU: {cpu:.1f}s user+system ({cpu / n * 1e6:.0f} us per input record)")
    print(
        f"worker, first decision to last: {span:.1f}s ({n / span:,.0f} input records/s; "
        f"{base_rate / (n / span):.1f}x slower than the plain consumer)"
    )
    print(
        f"worker, first decision visible to a read_committed reader to last: {visible:.1f}s "
        f"({n / visible:,.0f} input records/s)"
    )
    print(
        f"held time of sent messages without settle delay (ms): p50 {pct(held, 0.5):.0f}  "
        f"p95 {pct(held, 0.95):.0f}  p99 {pct(held, 0.99):.0f}  "
        "(an all-at-once backlog: includes queueing)"
    )
    if first.at is not None and seen:
        span_read = max(seen) - first.at
        cpu_read = cpu - first.cpu
        print(
            f"worker, first read to last decision visible: {span_read:.2f}s "
            f"({n / span_read:,.0f} input records/s); CPU {cpu_read:.2f}s "
            f"({cpu_read / n * 1e6:.0f} us per input record; startup excluded)"
        )
    else:
        print("(first read not seen on the stats page: no first-read figures)")
    if txns is not None:
        rounds = txns.get("rounds") or 0
        print(
            f"transactions: {txns['committed']:,} committed in {rounds:,} commit rounds "
            f"({txns['committed'] / took:,.0f}/s over the run), aborted {txns['aborted']}, "
            f"mean round {1000 * txns['seconds_total'] / max(1, rounds):.1f} ms, "
            f"recent p99 {txns['commit_ms_p99']} ms"
        )
    if args.timeline and stamps:
        t0s = min(stamps)
        per: dict[int, int] = {}
        for s in stamps:
            per[(s - t0s) // 500] = per.get((s - t0s) // 500, 0) + 1
        print("decisions per 0.5 s:", " ".join(str(per.get(i, 0)) for i in range(max(per) + 1)))
    if first.at is not None and seen:
        return n / (max(seen) - first.at), len(out) >= candidates
    return n / visible, len(out) >= candidates


class FirstRead:
    """When the worker read its first input record, and its CPU then: its stats page,
    polled every 10 ms from a thread of this process until it counts one. The worker's
    own start (imports, joining the group, recovering state) is then left out of the
    rate and the CPU per record, as a long-running worker never pays it per record."""

    def __init__(self, port: int, pid: int) -> None:
        self.at: float | None = None
        self.cpu = 0.0
        self._url = f"http://127.0.0.1:{port}/stats/"
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="first-read", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            at, cpu = time.monotonic(), cpu_seconds(self._pid)
            try:
                with urllib.request.urlopen(self._url, timeout=2) as res:
                    page = orjson.loads(res.read())
            except OSError:
                continue  # not listening yet
            counts = page.get("worker") or {}
            if any(counts.get(k, 0) for k in INPUT_ROLES):
                # read at most 10 ms before the request, or while it was served: count
                # from the request (the worker may be too busy to answer at once)
                self.at, self.cpu = at, cpu
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _transactions(port: int) -> dict[str, Any] | None:
    """The worker's transaction counts from its stats page (None: at_least_once)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=5) as res:
            page = orjson.loads(res.read())
    except OSError as exc:
        print(f"(stats page not read: {exc})")
        return None
    tx = page.get("transactions")
    return tx if isinstance(tx, dict) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
