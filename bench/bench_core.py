"""Benchmark the decision core: events/s, per-record latency, bytes per customer.

    .venv/bin/python bench/bench_core.py [--customers 3000] [--repeat 3]   (make bench)

Prints numbers and ratios, asserts nothing; writes bench/results/core.json.
Two baselines run in the same process on the same file: reading every line
with orjson alone (the floor of any Python reader of the file; the issue's
target is offline replay at >= 0.065x its rate), and parsing and validating
every record (what any consumer of these topics must pay). Offline replay
emulates 8 partitions, as ``trigger-sanity replay --offline`` does by default.
State size is the encoded bytes the changelogged table holds per customer
(the worker's memory store holds exactly these bytes).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import features
import orjson
from common import RESULTS, pct, write_result

from streams.contract import decode as codec
from streams.contract.history import HistoryRecord, read_history, write_history
from streams.core.encoding import encode
from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.offline.generator import generate
from streams.offline.replay import replay_offline
from streams.settings import Settings


def baseline_parse(records: list[HistoryRecord]) -> float:
    start = time.perf_counter()
    for r in records:
        codec.decode(r.topic, r.value, r.event_ms or 0, 0, DEFAULT_POLICY)
    return time.perf_counter() - start


def orjson_read(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - start


def core_latency(records: list[HistoryRecord]) -> tuple[list[float], Engine]:
    """Per-record time of decode + ingest + release (live-style, all in event-time order)."""
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    clock = engine.clock(0)
    for t in INPUT_KINDS:
        clock.set_idle(t, False)
    lat: list[float] = []
    perf = time.perf_counter_ns
    for r in records:
        t0 = perf()
        ms = r.record_ms if r.record_ms is not None else (r.event_ms or 0)
        p = codec.decode(r.topic, r.value, ms, 0, DEFAULT_POLICY)
        if isinstance(p, codec.Parsed):
            engine.ingest(0, p.kind, p.customer_id, p.event_ms, p.fact, ms)
            for t in INPUT_KINDS:
                clock.observe(t, p.event_ms)  # records are in global event-time order
            engine.release(0, 0)
        lat.append((perf() - t0) / 1000)
    return lat, engine


def heavy_customer_bytes(days: int) -> int:
    """One very active customer (several events a day for ``days``): pruning bounds it."""
    from tests.helpers import msg, purchase, session

    recs = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for d in range(days):
        for h in (9, 13, 18):
            ts = (start + timedelta(days=d, hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            recs += [session(ts), purchase(ts), msg(f"m{d}-{h}", "promotion", ts, payload={"d": d})]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "heavy.jsonl"
        write_history(path, recs)
        engine_store = MemoryStore()
        # replay_offline builds its own engine; repeat its loop here to keep the store
        engine = Engine(DEFAULT_POLICY, engine_store)
        for rec in read_history(path):
            if not isinstance(rec, HistoryRecord):
                continue
            ms = rec.event_ms or 0
            p = codec.decode(rec.topic, rec.value, ms, ms, DEFAULT_POLICY)
            if isinstance(p, codec.Parsed):
                engine.ingest(0, p.kind, p.customer_id, p.event_ms, p.fact, ms)
            engine.release(0, 0)
        engine.flush(0)
        st = engine_store.get("c-42")
        return len(encode(st)) if st else 0


def links_cost(customers: int, partitions: int) -> dict[str, float]:
    """The realistic field cases with and without identity links (a third of purchases by
    linked guests), offline, in this process: records/s, and state bytes per customer,
    shadows (the copies of linked ids' facts on other partitions) included."""
    from streams.core.linking import is_shadow
    from streams.offline import decide
    from streams.offline.decide import ReplaySummary, decide_file, first_pass
    from streams.offline.scenarios import write_realistic

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for links in (False, True):
            path = Path(tmp) / f"r{int(links)}.jsonl"
            write_realistic(path, Path(tmp) / "t.jsonl", customers, seed=8, links=links)
            engines: list[Any] = []
            orig = decide._FilePass.__init__

            def init(self: Any, *a: Any, _o: Any = orig, _e: list[Any] = engines, **k: Any) -> None:
                _o(self, *a, **k)
                _e.append(self.engine)

            decide._FilePass.__init__ = init  # type: ignore[method-assign]
            try:
                ends, _ = first_pass(path, partitions)
                summary = ReplaySummary()
                t0 = time.perf_counter()
                decide_file(path, DEFAULT_POLICY, partitions, ends, summary,
                            lambda _i, _o: None, sweep_every=0)  # fmt: skip
                took = time.perf_counter() - t0
            finally:
                decide._FilePass.__init__ = orig  # type: ignore[method-assign]
            data = engines[0].store.data
            own = [len(encode(st)) for k, st in data.items() if not is_shadow(k)]
            shadow = sum(len(encode(st)) for k, st in data.items() if is_shadow(k))
            tag = "links" if links else "no_links"
            out[f"{tag}_records_per_s"] = summary.records / took
            out[f"{tag}_bytes_per_customer"] = (sum(own) + shadow) / len(own)
            out[f"{tag}_shadow_bytes_per_customer"] = shadow / len(own)
            print(
                f"realistic {customers} customers {'with' if links else 'without'} links: "
                f"{summary.records} records in {took:.2f}s ({summary.records / took:,.0f}/s); "
                f"state bytes per customer {(sum(own) + shadow) / len(own):.0f} (of which "
                f"shadows {shadow / len(own):.1f}; {len(own)} customers, "
                f"{engines[0].counts['link_copies']} facts copied)"
            )
    out["links_rate_ratio"] = out["links_records_per_s"] / out["no_links_records_per_s"]
    print(f"with links / without, records/s: {out['links_rate_ratio']:.2f}")
    return out


def features_cost(customers: int, spec: str, repeat: int, partitions: int) -> dict[str, Any]:
    """Offline replay, one process, of the tidy history (links: a third of purchases by
    guests linked at checkout) under each feature set's policy: records/s and the ratio to
    an orjson read of the same file, in this process. ``exactly_once`` changes nothing
    offline (no transactions): it is a worker feature."""
    import tomllib

    from streams.core.policy import policy_from_mapping

    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fs in features.feature_sets(spec):
            name = features.label(fs)
            path = Path(tmp) / f"{name}.jsonl"
            write_history(path, features.tidy_records(customers, fs, seed=99))
            n = sum(1 for _ in open(path, "rb"))
            policy = policy_from_mapping(tomllib.loads(features.policy_text(fs)), name)
            floor = min(orjson_read(path) for _ in range(repeat))
            took = []
            for _ in range(repeat):
                start = time.perf_counter()
                replay_offline(path, policy, None, partitions=partitions)
                took.append(time.perf_counter() - start)
            best = min(took)
            rows[name] = {"records": n, "per_s": round(n / best), "ratio_to_orjson": floor / best}
            print(
                f"features {name:<40} {n:>7} records {n / best:>9,.0f}/s  "
                f"{floor / best:.3f}x the orjson read (target >= 0.065x)",
                flush=True,
            )
    if "none" in rows:
        base = rows["none"]["per_s"]
        for row in rows.values():
            row["against_none"] = row["per_s"] / base
        cost = ", ".join(f"{k} {v['against_none']:.2f}x" for k, v in rows.items())
        print(f"against none: {cost}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument(
        "--jobs", type=int, default=2, help="also replay with N processes (replay --jobs N)"
    )
    ap.add_argument(
        "--links",
        type=int,
        default=0,
        metavar="N",
        help="only measure identity links: N realistic customers with and without linked "
        "guest checkouts (records/s, state bytes per customer with shadows)",
    )
    features.add_argument(ap)
    ap.add_argument(
        "--gc-threshold",
        type=int,
        default=Settings.model_fields["gc_threshold"].default,
        help="the collector's youngest-generation threshold, as TRIGGER_SANITY_GC_THRESHOLD "
        "sets it for `replay --offline` (default: its default; 0: Python's, 700)",
    )
    args = ap.parse_args()
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    print(f"collector thresholds {gc.get_threshold()}")
    if args.features:
        rows = features_cost(args.customers, args.features, args.repeat, args.partitions)
        found = {"customers": args.customers, "features": rows}
        write_result(RESULTS / "core_features.json", found)
        return 0
    if args.links:
        links_cost(args.links, args.partitions)
        return 0

    history = generate(args.customers, seed=99)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_history(path, history)
        records = [r for r in read_history(path) if isinstance(r, HistoryRecord)]
        n = len(records)
        print(
            f"history: {args.customers} customers, {n} records, "
            f"{path.stat().st_size / n:.0f} B/record"
        )

        floor = min(orjson_read(path) for _ in range(args.repeat))
        base = min(baseline_parse(records) for _ in range(args.repeat))
        full = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            summary = replay_offline(path, DEFAULT_POLICY, None, partitions=args.partitions)
            full.append(time.perf_counter() - start)
        best = min(full)
        blast_policy = DEFAULT_POLICY.model_copy(
            update={"blast": DEFAULT_POLICY.blast.model_copy(update={"enabled": True})}
        )
        blast = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            replay_offline(path, blast_policy, None, partitions=args.partitions)
            blast.append(time.perf_counter() - start)
        jobs = []
        for _ in range(args.repeat if args.jobs > 1 else 0):
            start = time.perf_counter()
            replay_offline(path, DEFAULT_POLICY, None, partitions=args.partitions, jobs=args.jobs)
            jobs.append(time.perf_counter() - start)
        print(f"orjson read of the file only:   {n / floor:>10,.0f} records/s")
        print(f"baseline (parse+validate only): {n / base:>10,.0f} records/s")
        print(
            f"offline replay (full core):     {n / best:>10,.0f} records/s   "
            f"{floor / best:.3f}x the orjson read (target >= 0.065x), "
            f"{base / best:.2f}x parse+validate "
            f"({summary.candidates} candidates, {sum(summary.actions.values())} decisions)"
        )
        print(
            f"offline replay, [blast] on:      {n / min(blast):>10,.0f} records/s   "
            f"{best / min(blast):.2f}x with it off (every candidate through the campaign gate)"
        )
        if jobs:
            print(
                f"offline replay, {args.jobs} processes: {n / min(jobs):>10,.0f} records/s   "
                f"{floor / min(jobs):.3f}x the orjson read, {best / min(jobs):.2f}x one process "
                "(same output; the first pass and the merge run in one)"
            )
        result: dict[str, object] = {
            "customers": args.customers,
            "records": n,
            "partitions": args.partitions,
            "orjson_read_per_s": round(n / floor),
            "parse_validate_per_s": round(n / base),
            "replay_per_s": round(n / best),
            "replay_blast_per_s": round(n / min(blast)),
            "blast_ratio": round(best / min(blast), 4),
            "ratio_to_orjson": round(floor / best, 4),
            "jobs": args.jobs,
            "replay_jobs_per_s": round(n / min(jobs)) if jobs else None,
            "jobs_ratio_to_orjson": round(floor / min(jobs), 4) if jobs else None,
        }

    lat, engine = core_latency(records)
    print(
        f"per-record decode+ingest+release latency (us): p50 {pct(lat, 0.50):.1f}  "
        f"p95 {pct(lat, 0.95):.1f}  p99 {pct(lat, 0.99):.1f}  max {max(lat):.1f}"
    )

    sizes = []
    store = engine.store
    assert isinstance(store, MemoryStore)
    for st in store.data.values():
        sizes.append(len(encode(st)))
    print(
        "state bytes per customer (encoded, as held by the table): "
        f"mean {statistics.mean(sizes):.0f}  "
        f"p50 {pct(sizes, 0.5):.0f}  p99 {pct(sizes, 0.99):.0f}  max {max(sizes)}  "
        f"({len(sizes)} customers)"
    )
    for days in (30, 120):
        print(
            f"heavy customer, 3 sessions+purchases+messages a day for {days} days: "
            f"{heavy_customer_bytes(days):,} bytes"
        )
    result["state_bytes_mean"] = round(statistics.mean(sizes))
    result["state_bytes_p99"] = round(pct(sizes, 0.99))
    write_result(RESULTS / "core.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
