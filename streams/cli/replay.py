"""``trigger-sanity replay`` (offline, with a report, or into Kafka) and ``generate``."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from streams.cli.common import (
    Subparsers,
    fail,
    kafka_settings,
    open_out,
    positive,
    settings,
    tune_collector,
)
from streams.contract.topics import INPUT_ROLES
from streams.core.policy import load_policy
from streams.hints import command

if TYPE_CHECKING:
    from streams.core.campaigns import Order
    from streams.core.policy import Policy
    from streams.core.policy_history import PolicyHistory


def add_replay(sub: Subparsers) -> None:
    r = sub.add_parser(
        "replay",
        help="replay a history file offline or into Kafka",
        description="A history file is JSON Lines (optionally gzip): "
        '{"topic": "purchases", "value": {...}, "key"?: ..., "timestamp"?: ...}. '
        "--offline runs the decision core without Kafka and writes one decision per "
        "candidate; without it the records are produced into the input topics.",
    )
    r.add_argument("file", help="history file (.jsonl or .jsonl.gz)")
    r.add_argument("--offline", action="store_true", help="run the core over the file, no Kafka")
    r.add_argument(
        "--out", help="offline: write decisions here (JSON Lines; '-' for stdout; .gz ok)"
    )
    r.add_argument("--late-out", help="offline: write late-evidence findings here")
    r.add_argument("--policy", help="policy file to test (default: contract defaults)")
    _offline_options(r)
    r.add_argument(
        "--rebase-time",
        action="store_true",
        help="into Kafka: shift every event and record time so the history ends now "
        "(occurred_at, created_at, context.cart_updated_at and record timestamps)",
    )
    r.add_argument(
        "--speedup",
        type=float,
        default=None,
        help="into Kafka: replay event-time gaps N times faster (default: as fast as possible)",
    )
    r.add_argument(
        "--partitioner",
        choices=["murmur2", "crc32"],
        default="murmur2",
        help="into Kafka: where records go: murmur2 (the contract's, default) or crc32 "
        "(librdkafka's default, as kcat and confluent-kafka produce: the workers re-route "
        "them). Each record says which streams of its partition have records still to "
        "come, so with murmur2 the workers decide as the offline replay of the file does, "
        "whatever its order and at full speed; with crc32, a file out of time order (grouped "
        "by customer) can be decided otherwise, and replay says so before it starts",
    )
    r.set_defaults(fn=cmd_replay)


def _offline_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--campaign-history",
        help="offline: ops commands on campaigns (`campaign history --json > FILE`), each "
        "applied from its effective time on, as the workers did (with [blast] on)",
    )
    r.add_argument(
        "--policy-history",
        help="offline: versions applied live (`policy history --json > FILE`), each deciding "
        "the candidates created from its effective time on, as the workers did",
    )
    r.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="offline: emulate input topics of N partitions, as the worker reads them "
        "(default: TRIGGER_SANITY_PARTITIONS, 8)",
    )
    r.add_argument(
        "--jobs",
        type=positive,
        default=1,
        help="offline: decide the partitions in N processes (at most one per partition); "
        "the output is the same, byte for byte. The file is read by each, and a first pass "
        "keeps one byte per line in memory (default 1; not with --report or --against)",
    )
    r.add_argument(
        "--report",
        help="offline: write one self-contained HTML report (totals, per rule and trigger, "
        "suppression rate over event time, late evidence and the setting that would have "
        "caught it, examples; with --truth precision and recall per rule)",
    )
    r.add_argument("--truth", help="offline: ground truth, one decision per line (for --report)")
    r.add_argument(
        "--against",
        help="offline: a second policy file; prints (and with --report writes) every message "
        "decided differently under it, and why",
    )


def cmd_replay(args: argparse.Namespace) -> int:
    if args.jobs > 1 and not args.offline:
        fail("--jobs is for --offline replays")
        return 2
    if args.jobs > 1 and (args.report or args.against):
        fail("--report and --against run in one process: drop --jobs")
        return 2
    if args.offline and (args.report or args.against):
        return _replay_report(args)
    if args.offline:
        return _replay_offline(args)
    return _replay_into_kafka(args)


def _history_of(policy: Policy, path: str | None) -> PolicyHistory | None:
    if not path:
        return None
    from streams.core.policy_history import history_from_file

    return history_from_file(policy, path)


def _orders_of(path: str | None) -> list[Order]:
    if not path:
        return []
    from streams.core.campaign_history import orders_from_file

    return orders_from_file(path)


def _replay_offline(args: argparse.Namespace) -> int:
    from streams.offline.replay import replay_offline
    from streams.ops.produce import print_progress

    policy = load_policy(args.policy or settings().policy_file)
    tune_collector(settings())
    if args.jobs > 1 and policy.blast.enabled:
        print(
            "note: [blast] is on: a campaign spans every partition, so one process decides "
            "them all (--jobs ignored)",
            file=sys.stderr,
        )
    with ExitStack() as stack:
        out = stack.enter_context(open_out(args.out)) if args.out else None
        late = stack.enter_context(open_out(args.late_out)) if args.late_out else None
        partitions = args.partitions or settings().partitions
        summary = replay_offline(
            args.file,
            policy,
            out,
            print_progress("replay"),
            late,
            partitions=partitions,
            history=_history_of(policy, args.policy_history),
            jobs=args.jobs,
            orders=_orders_of(args.campaign_history),
        )
    print(summary.render(), file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def _replay_report(args: argparse.Namespace) -> int:
    """One pass per policy; the first also writes ``--out``/``--late-out`` when given."""
    from streams.offline.report import (
        collect,
        compare,
        diff_summary,
        read_truth,
        render,
        render_diff,
    )

    policy = load_policy(args.policy or settings().policy_file)
    partitions = args.partitions or settings().partitions
    history = _history_of(policy, args.policy_history)
    with ExitStack() as stack:
        out = stack.enter_context(open_out(args.out)) if args.out else None
        late = stack.enter_context(open_out(args.late_out)) if args.late_out else None
        got, summary = collect(args.file, policy, partitions, history, out, late,
                               _orders_of(args.campaign_history))  # fmt: skip
    info: TextIO = sys.stderr if args.out == "-" else sys.stdout  # decisions own stdout
    print(summary.render(), file=info)
    title = Path(args.file).name
    if args.against:
        other = load_policy(args.against)
        got_b, _ = collect(args.file, other, partitions)
        changes = compare(got, got_b)
        print(diff_summary(changes, policy.version, other.version), file=info)
        if args.report:
            page = render_diff(changes, policy.version, other.version, title)
            Path(args.report).write_text(page)
            print(f"wrote {args.report}", file=info)
        return 0
    truth = read_truth(args.truth) if args.truth else None
    Path(args.report).write_text(render(title, got, summary, policy, truth))
    print(f"wrote {args.report} (open it in a browser; it needs no network)", file=info)
    return 0


def _replay_into_kafka(args: argparse.Namespace) -> int:
    from streams.cli.progress import Progress, count_lines
    from streams.ops.produce import produce_file

    conf = kafka_settings()
    if args.partitioner == "crc32":
        _crc32_advice(args.file, conf.partitions)
    bar = Progress("produced")

    def start(delta: int) -> None:
        if delta:
            print(f"rebasing times by {delta / 86_400_000:+,.2f} days (the history ends now)")
        bar.restart(count_lines(args.file))

    got = produce_file(
        conf, args.file, args.speedup, args.rebase_time, bar.update, start, args.partitioner
    )
    bar.finish()
    sent, took = got.sent, got.seconds
    print(f"produced {sent} records in {took:.1f}s ({sent / took if took else 0:,.0f}/s)")
    for role in INPUT_ROLES:
        print(f"  {conf.topics[role]}: {got.counts.get(role, 0):,}")
    for ln, err in got.bad[:20]:
        print(f"  skipped line {ln}: {err}")
    return 0


def _crc32_advice(path: str, partitions: int) -> None:
    """Say so before producing when crc32 placement makes records late, or in time, that
    the contract's placement does not: those decisions can differ from offline."""
    from streams.ops.produce import judged_otherwise

    differ = judged_otherwise(path, partitions, "crc32")
    if not differ:
        return
    print(
        f"note: placed by crc32, {differ:,} records of this file are behind a later event "
        "time on the partition they are produced to but not on their customer's partition, "
        "or the other way round. The workers forward them to their customer's partition but "
        "judge lateness where they came in, so some decisions can differ from the offline "
        "replay (every one that lets a message through gets a late-evidence record). For "
        "the offline decisions, replay with --partitioner murmur2 (the default).",
        file=sys.stderr,
    )


def add_generate(sub: Subparsers) -> None:
    g = sub.add_parser(
        "generate",
        help="write a deterministic synthetic history file",
        description="tidy (default): every trigger and rule in event-time order. realistic: "
        "automation misbehaving as in the field (cart mails from a snapshot before the "
        "purchase, purchases reaching their topic late, week-old recommendations, retried "
        "message ids, promotion bursts, triggers a day in a queue, receive-only customers), "
        "streamed in bounded memory, with a ground-truth file beside it: per candidate the "
        "decision the contract requires, the rule and why, derived from how each case was "
        "built.",
    )
    g.add_argument("out", help="output file (.jsonl or .jsonl.gz)")
    g.add_argument("--customers", type=int, default=1000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--profile", choices=["tidy", "realistic"], default="tidy")
    g.add_argument("--days", type=int, default=30, help="realistic: days the history spans")
    g.add_argument("--truth", help="realistic: truth file (default: OUT with .truth.jsonl)")
    g.add_argument(
        "--jitter",
        type=float,
        default=3.0,
        help="realistic: seconds by which purchase producers are out of order (default 3)",
    )
    g.add_argument(
        "--blast",
        action="store_true",
        help="realistic: add four whole campaigns in one window half way through: a "
        "recommender falling back to identical content (trips), a personalised one of the "
        "same size, an identical promotion (neither trips) and a looping journey (trips on "
        "volume). Their truth is for a policy with [blast] enabled (policies/blast.toml)",
    )
    g.add_argument(
        "--holds",
        action="store_true",
        help="realistic: add 400 customers across six time zones with night-time SMS and "
        "push, cart mails held for the night, a customer who moved, and customers over a "
        "cap across sms and push. Their truth is for policies/holds.toml",
    )
    g.add_argument(
        "--links",
        action="store_true",
        help="realistic: about a third of the purchases are made under a guest id linked "
        "to the account at checkout (the `identities` topic), plus 120 customers whose "
        "links come after the deadline, late, unlinked, chained or in a cycle. Their truth "
        "is for the default policy at 8 partitions",
    )
    g.set_defaults(fn=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    if args.profile == "realistic":
        return _generate_realistic(args)
    from streams.contract.history import write_history
    from streams.offline.generator import generate

    records = generate(args.customers, seed=args.seed)
    write_history(args.out, records)
    print(f"wrote {len(records)} records for {args.customers} customers to {args.out}")
    return 0


def _generate_realistic(args: argparse.Namespace) -> int:
    from streams.offline.scenarios import write_realistic

    out = Path(args.out)
    truth = Path(args.truth) if args.truth else truth_path(out)
    started = time.perf_counter()
    n, candidates = write_realistic(
        out,
        truth,
        args.customers,
        args.seed,
        args.days,
        int(args.jitter * 1000),
        args.blast,
        args.holds,
        args.links,
    )
    took = time.perf_counter() - started
    print(
        f"wrote {n:,} records for {args.customers:,} customers to {out} "
        f"({n / took if took else 0:,.0f} records/s) and the decision the contract "
        f"requires for each of the {candidates:,} candidates to {truth}"
    )
    check = command(
        "replay", str(out), "--offline", "--report", "report.html", "--truth", str(truth)
    )
    print(f"check a replay against it: {check}")
    return 0


def truth_path(out: Path) -> Path:
    """``h.jsonl.gz`` -> ``h.truth.jsonl``: beside the history, named after it."""
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + ".truth.jsonl")
