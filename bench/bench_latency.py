"""Decision latency of the worker at fixed, live-like input rates.

    .venv/bin/python bench/bench_latency.py [--rates 1000,3000,5000] [--seconds 25]
        [--warmup 5] [--partitions 8] [--set idle_check_interval=0.2] [--json FILE]

Uses KAFKA_BOOTSTRAP_SERVERS, or starts the local broker (tools/kafka). One worker
(``trigger-sanity worker``, a real process) runs on fresh topics with a policy whose
settle delays are all 0, so that every candidate may be decided as soon as it is read:
what is measured is the worker, not a delay the policy asks for. Then, rate after rate,
new customers live a short life at the moment it is sent (a session, a promotion, one
to three purchases, for some a second identical promotion, the session's end), produced
at the fixed rate in input records/s by a murmur2-keyed idempotent producer
(kafka-python, or ``--producer librdkafka`` with ``partitioner=murmur2_random``: the
same partitions for a fraction of the CPU), event time = record time = the moment of
sending. The first ``--warmup``
seconds of each rate are not measured.

Latency of a candidate = when a read_committed reader here got its decision (send-queue
or suppressed; with exactly_once, after its transaction committed) - the timestamp of
the outbound record it decided (set here when it was sent: the same clock), matched by
``message_id``. It splits into decide (``decided_at`` - input) and publish (seen -
``decided_at``: the decision waits for its transaction to commit, or with
at_least_once until the state recording it is durable). ``--set guarantee=...`` and
``--set commit_interval=...`` compare the guarantees and commit intervals.
Whether the worker kept up: the median latency of the last 20% of a rate's candidates
against the first 20% (latency that grows over the run is a queue that grows), the
median per 5 s of input, and the worker's CPU over the measured seconds (100% = one
core; per input record it is the worker's cost whatever else runs on the machine). The
producer runs in this process and takes CPU too: on a small machine both are printed.
Prints a table, writes JSON (default bench/results/latency.json); asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import features
import orjson
from common import (
    OUTPUT_ROLES,
    RESULTS,
    Sender,
    add_settings_argument,
    cpu_seconds,
    decision_of,
    deployment,
    kafka_python_sender,
    librdkafka_sender,
    pct,
    run_queue_seconds,
    settings_of,
    start_worker,
    stop_worker,
    wait_until_ready,
    write_result,
)
from kafka import KafkaConsumer, TopicPartition

from streams.contract.history import EVENT_TIME_FIELD
from streams.core.clock import iso
from streams.offline.generator import CHANNELS, SKUS
from streams.settings import Settings

# Every trigger decided at once: the contract's only non-zero default is the cart's.
POLICY = 'version = "bench-settle-0"\n[settle]\nabandoned_cart = 0\n'

KEPT_UP_RATIO = 1.5
"""Last-20% median latency over first-20% median above this: the queue grew."""
KEPT_UP_LAG_MS = 1000
"""Last-20% median above this: a queue, even if it stopped growing (it grew during the
warm-up). The worker's own waits (batching, publish cycle, idle check) are below it."""
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
"""The customers' zones (quiet hours): UTC-5 to UTC+5:30, see ``quiet_window``."""
TREND_S = 5
"""Seconds of input per point of the latency trend."""


@dataclass
class Sent:
    """One rate's production: what was sent, and when the measured part began and ended."""

    records: int = 0
    measured_records: int = 0
    measured_s: float = 0.0
    cpu_s: float = 0.0  # the worker's, over the measured part
    producer_cpu_s: float = 0.0  # this process's (it produces), likewise
    waited_s: float = 0.0  # the worker's main thread, ready to run but without a CPU
    candidates: dict[str, int] = field(default_factory=dict)  # message_id -> input ms
    measured: set[str] = field(default_factory=set)


def lives(run: str, seed: int, links: bool = False) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """New customers, one after another: each a list of (topic role, value) in the order
    they happen. Times are filled in when a record is sent. ``links``: every third
    customer buys as a guest, linked to the account right after the session starts (the
    guest is on another partition, mostly: its purchases travel to the account's)."""
    rng = random.Random(seed)
    i = 0
    while True:
        cid = f"{run}-c{i}"
        i += 1
        sid = f"{cid}-s"
        promo: dict[str, Any] = {
            "message_id": f"{cid}-m1",
            "customer_id": cid,
            "trigger": "promotion",
            "channel": rng.choice(CHANNELS),
            "category": "marketing",
            "context": {},
            "payload": {"template": f"promo-{rng.randint(1, 3)}"},
        }
        life: list[tuple[str, dict[str, Any]]] = [
            (
                "sessions",
                {
                    "customer_id": cid,
                    "session_id": sid,
                    "kind": "started",
                    "timezone": rng.choice(ZONES),
                },
            ),
        ]
        buyer = cid
        if links and i % 3 == 0:
            buyer = f"{run}-g{i}"
            link = {"customer_id": buyer, "linked_to": cid, "kind": "link", "source": "checkout"}
            life.append(("identities", link))
        life.append(("outbound", promo))
        for k in range(rng.randint(1, 3)):
            sku = rng.choice(SKUS)
            order = {
                "customer_id": buyer,
                "order_id": f"{cid}-o{k}",
                "items": [{"sku": sku, "quantity": 1, "unit_price": "9.99"}],
                "currency": "EUR",
            }
            life.append(("purchases", order))
        if rng.random() < 0.1:  # the same content again: suppressed (duplicate_content)
            life.append(("outbound", {**promo, "message_id": f"{cid}-m2"}))
        life.append(("sessions", {"customer_id": cid, "session_id": sid, "kind": "ended"}))
        for n, (_role, value) in enumerate(life):
            if "message_id" not in value:
                value["event_id"] = f"{cid}-e{n}"
        yield life


def interleaved(
    run: str, seed: int, concurrent: int, links: bool = False
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records of ``concurrent`` customers at a time, interleaved at random (as live
    traffic is), each customer's own records in order."""
    rng = random.Random(seed)
    source = lives(run, seed, links)
    active = [iter(next(source)) for _ in range(concurrent)]
    while True:
        k = rng.randrange(concurrent)
        rec = next(active[k], None)
        if rec is None:
            active[k] = iter(next(source))
            continue
        yield rec


def produce_at(
    producer: Sender,
    settings: Settings,
    records: Iterator[tuple[str, dict[str, Any]]],
    rate: float,
    warmup: float,
    seconds: float,
    worker_pid: int,
) -> Sent:
    """``rate`` records/s for ``warmup + seconds``; candidates of the last ``seconds``
    are the measured ones. Paced against the clock: a producer that falls behind sends
    as fast as it can, and the achieved rate says so."""
    sent = Sent()
    total = int(rate * (warmup + seconds))
    first_measured = int(rate * warmup)
    t0 = time.perf_counter()
    t_measure = cpu0 = own0 = wait0 = 0.0
    while sent.records < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        while sent.records < due:
            if sent.records == first_measured:
                t_measure, cpu0 = time.perf_counter(), cpu_seconds(worker_pid)
                own0 = cpu_seconds(os.getpid())
                wait0 = run_queue_seconds(worker_pid)
            role, value = next(records)
            now = int(time.time() * 1000)
            value[EVENT_TIME_FIELD[role]] = iso(now)
            producer.send(
                settings.topics[role], value["customer_id"].encode(), orjson.dumps(value), now
            )
            if role == "outbound":
                sent.candidates[value["message_id"]] = now
                if sent.records >= first_measured:
                    sent.measured.add(value["message_id"])
            sent.records += 1
        ahead = sent.records / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)  # pacing to the fixed input rate
    sent.measured_s = time.perf_counter() - t_measure
    sent.cpu_s = cpu_seconds(worker_pid) - cpu0
    sent.producer_cpu_s = cpu_seconds(os.getpid()) - own0
    sent.waited_s = run_queue_seconds(worker_pid) - wait0
    sent.measured_records = total - first_measured
    producer.flush()
    return sent


def make_producer(kind: str, settings: Settings) -> Sender:
    """Both murmur2-keyed and idempotent, as the contract asks of producers. kafka-python
    (the default, what ``trigger-sanity replay`` uses) took 50-84% of a core here at
    these rates, librdkafka 13-35%: on a small machine that is CPU the worker lacks."""
    if kind == "librdkafka":
        return librdkafka_sender(
            settings, 5, partitioner="murmur2_random", **{"enable.idempotence": True}
        )
    return kafka_python_sender(settings, 5)


class Decisions:
    """Every decision read so far, by message_id: (when this reader got it, decided_at).
    One consumer for the whole run, polled by its own thread all along (a reader that
    polled only after each rate's input would stamp decisions with when it looked)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(enable_auto_commit=False, **settings.kafka_consumer_kwargs())
        tps = [
            TopicPartition(settings.topics[r], p)
            for r in OUTPUT_ROLES
            for p in range(settings.partitions)
        ]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.seen: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="decisions", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                seen = time.time_ns() // 1_000_000
                got = []
                for r in batch:
                    mid, at = decision_of(orjson.loads(r.value))
                    got.append((mid, seen, int(datetime.fromisoformat(at).timestamp() * 1000)))
                with self._lock:
                    for mid, t, decided in got:
                        self.seen.setdefault(mid, (t, decided))  # a duplicate: the first

    def wait_for(
        self, message_ids: Iterable[str], timeout: float, worker: subprocess.Popen[bytes]
    ) -> None:
        """Until every one of ``message_ids`` is decided, ``timeout`` has passed or the
        worker is gone (what it wrote is still read)."""
        deadline = time.monotonic() + timeout
        wanted = set(message_ids)
        while time.monotonic() < deadline:
            with self._lock:
                if wanted <= self.seen.keys():
                    return
            if worker.poll() is not None:
                deadline = min(deadline, time.monotonic() + 2)
            time.sleep(0.1)  # the reader thread fills ``seen``; polled, bounded by the deadline

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()


def summarize(rate: float, sent: Sent, decisions: Decisions) -> dict[str, Any]:
    """Percentiles of one rate's measured candidates, in input order for the trend."""
    rows = sorted(
        (sent.candidates[m], *decisions.seen[m]) for m in sent.measured if m in decisions.seen
    )
    total = [out - t_in for t_in, out, _ in rows]
    decide = [at - t_in for t_in, _, at in rows]
    publish = [out - at for _, out, at in rows]
    fifth = max(1, len(total) // 5)
    first, last = pct(total[:fifth], 0.5), pct(total[-fifth:], 0.5)
    ratio = last / first if first else float("nan")
    missing = len(sent.measured) - len(rows)
    trend: dict[int, list[int]] = {}
    for (t_in, _, _), lat in zip(rows, total, strict=True):
        trend.setdefault((t_in - rows[0][0]) // (TREND_S * 1000), []).append(lat)
    return {
        "target_rate": rate,
        "achieved_rate": sent.measured_records / sent.measured_s,
        "measured_s": sent.measured_s,
        "candidates": len(sent.measured),
        "missing": missing,
        "latency_ms": {
            "p50": pct(total, 0.5),
            "p95": pct(total, 0.95),
            "p99": pct(total, 0.99),
            "max": max(total, default=float("nan")),
        },
        "decide_ms": {"p50": pct(decide, 0.5), "p99": pct(decide, 0.99)},
        "publish_ms": {"p50": pct(publish, 0.5), "p99": pct(publish, 0.99)},
        "p50_first_20pct_ms": first,
        "p50_last_20pct_ms": last,
        "last_over_first": ratio,
        "kept_up": missing == 0 and ratio <= KEPT_UP_RATIO and last <= KEPT_UP_LAG_MS,
        f"p50_per_{TREND_S}s_ms": [pct(trend[k], 0.5) for k in sorted(trend)],
        "worker_cpu": sent.cpu_s / sent.measured_s,
        "worker_cpu_us_per_record": sent.cpu_s / sent.measured_records * 1e6,
        "producer_cpu": sent.producer_cpu_s / sent.measured_s,
        "worker_waiting_for_cpu": sent.waited_s / sent.measured_s,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'rate/s':>7} {'achieved':>9} {'cands':>6} {'p50':>6} {'p95':>6} {'p99':>6} "
        f"{'max':>6} {'decide p50/p99':>15} {'publish p50/p99':>16} {'first20':>8} "
        f"{'last20':>7} {'last/first':>10} {'CPU':>5} {'us/rec':>6} {'wait':>5} {'prod':>5} "
        f"{'kept up':>8}"
    )
    for r in rows:
        lat, dec, pub = r["latency_ms"], r["decide_ms"], r["publish_ms"]
        kept = "yes" if r["kept_up"] else "NO"
        if r["missing"]:
            kept += f" ({r['missing']} undecided)"
        print(
            f"{r['target_rate']:>7,.0f} {r['achieved_rate']:>9,.0f} {r['candidates']:>6} "
            f"{lat['p50']:>6.0f} {lat['p95']:>6.0f} {lat['p99']:>6.0f} {lat['max']:>6.0f} "
            f"{dec['p50']:>7.0f}/{dec['p99']:<7.0f} {pub['p50']:>8.0f}/{pub['p99']:<7.0f} "
            f"{r['p50_first_20pct_ms']:>8.0f} {r['p50_last_20pct_ms']:>7.0f} "
            f"{r['last_over_first']:>10.2f} {r['worker_cpu']:>5.0%} "
            f"{r['worker_cpu_us_per_record']:>6.0f} {r['worker_waiting_for_cpu']:>5.0%} "
            f"{r['producer_cpu']:>5.0%} {kept:>8}"
        )
    for r in rows:
        trend = " ".join(f"{v:.0f}" for v in r[f"p50_per_{TREND_S}s_ms"])
        print(f"{r['target_rate']:>7,.0f}/s: p50 per {TREND_S} s of input: {trend}")
    print(
        "latencies in ms, seen by a read_committed reader - input timestamp (decide: to "
        "decided_at; publish: decided_at to seen); first20/last20: median of the first/last "
        "20% of candidates; "
        f"kept up: all decided, last/first <= {KEPT_UP_RATIO} and last20 <= {KEPT_UP_LAG_MS} ms; "
        "CPU: the worker's, 100% = one core; us/rec: its CPU per input record; wait: share of "
        "the time its event loop was ready but had no CPU; prod: the producer's CPU (this "
        "process), which shares the machine with the worker"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rates", default="1000,3000,5000", help="input records/s, comma-separated, in order"
    )
    ap.add_argument("--seconds", type=float, default=25, help="measured seconds per rate")
    ap.add_argument("--warmup", type=float, default=5, help="unmeasured seconds per rate")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--concurrent", type=int, default=64, help="customers live at a time")
    add_settings_argument(ap, "idle_check_interval=0.2")
    ap.add_argument(
        "--producer",
        choices=("kafka-python", "librdkafka"),
        default="kafka-python",
        help="the input producer (both murmur2-keyed and idempotent; librdkafka uses less CPU)",
    )
    ap.add_argument(
        "--blast",
        action="store_true",
        help="turn [blast] on in the policy: every candidate waits for the campaign gate of "
        "all partitions (the latency that whole-campaign checks add)",
    )
    ap.add_argument(
        "--links",
        action="store_true",
        help="every third customer buys as a guest linked to the account (identity links: "
        "the latency that forwarding facts and links between partitions adds)",
    )
    features.add_argument(ap)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--log", metavar="FILE", help="keep the worker's log in FILE")
    ap.add_argument("--json", type=Path, default=RESULTS / "latency.json")
    args = ap.parse_args()
    if args.features:
        results = []
        for fs in features.feature_sets(args.features):
            print(f"--- features {features.label(fs)}", flush=True)
            results.append((features.label(fs), run(args, fs)))
        if len(results) > 1:
            print("\nfeature sets: p99 ms per rate (kept up)")
            for name, rows in results:
                cells = "  ".join(
                    f"{r['target_rate']:,.0f}/s {r['latency_ms']['p99']:.0f}"
                    f"{'' if r['kept_up'] else ' NO'} ({r['worker_cpu_us_per_record']:.0f} us/rec)"
                    for r in rows
                )
                print(f"  {name:<14} {cells}")
        return 0
    run(args, None)
    return 0


def quiet_window(now_ms: int) -> tuple[str, str]:
    """Quiet hours two hours long, ten hours from now in UTC: no zone of the benchmark
    (``ZONES``) is in them for the next few hours, so every SMS and push candidate
    is checked against them and none is held for hours (the latency measured is the
    check's, not the policy's hold)."""
    h = (now_ms // 3_600_000 + 10) % 24
    return f"{h:02d}:00", f"{(h + 2) % 24:02d}:00"


def run(args: argparse.Namespace, fs: frozenset[str] | None) -> list[dict[str, Any]]:
    """One worker through every rate of ``args``: the table printed, the JSON written."""
    rates = [float(r) for r in args.rates.split(",")]
    overrides = settings_of(args)
    links = args.links
    text = POLICY + ("[blast]\nenabled = true\n" if args.blast else "")
    if fs is not None:
        links = "links" in fs
        quiet = quiet_window(int(time.time() * 1000))
        text = features.policy_text(fs, settle="abandoned_cart = 0", quiet=quiet)
        overrides.setdefault("guarantee", features.guarantee(fs))

    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.toml"
        policy.write_text(text)
        env, settings = deployment(
            "lat",
            partitions=str(args.partitions),
            log_level="INFO",
            policy_file=str(policy),
            data_dir=str(Path(tmp) / "data"),
            **overrides,
        )
        log_path = Path(args.log) if args.log else Path(tmp) / "worker.log"
        log = open(log_path, "wb")
        worker = start_worker(env, log)
        decisions = Decisions(settings)
        rows: list[dict[str, Any]] = []
        try:
            ready = wait_until_ready(log_path, worker)
            print(f"worker ready in {ready:.1f}s ({args.partitions} partitions)", flush=True)
            producer = make_producer(args.producer, settings)
            records = interleaved(settings.app_id, 17, args.concurrent, links)
            for rate in rates:
                sent = produce_at(
                    producer, settings, records, rate, args.warmup, args.seconds, worker.pid
                )
                decisions.wait_for(sent.candidates, args.drain_timeout, worker)
                rows.append(summarize(rate, sent, decisions))
                if worker.poll() is not None:
                    print(f"the worker exited ({worker.returncode}) at {rate:,.0f}/s: see its log")
                    break
                r = rows[-1]
                print(
                    f"{rate:,.0f}/s: achieved {r['achieved_rate']:,.0f}/s, p50 "
                    f"{r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms",
                    flush=True,
                )
            producer.close()
        finally:
            decisions.close()
            stop_worker(worker)
            log.close()
    print_table(rows)
    write_result(
        args.json,
        {
            "partitions": args.partitions,
            "warmup_s": args.warmup,
            "producer": args.producer,
            "policy": text,
            "links": links,
            "worker_settings": overrides,
            "rates": rows,
        },
    )
    return rows


if __name__ == "__main__":
    sys.exit(main())
