"""``trigger-sanity policy show|check|apply|history|rollback``."""

from __future__ import annotations

import argparse
import sys

import orjson

from streams.cli.common import Subparsers, fail, kafka_settings, now_ms, settings
from streams.core.policy import load_policy, policy_as_toml
from streams.hints import command


def add_policy(sub: Subparsers) -> None:
    pol = sub.add_parser(
        "policy",
        help="show, check, apply live, list or roll back policy versions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
show FILE?      the effective policy as TOML (defaults filled in)
check FILE      validate a policy file
apply FILE      publish FILE as a new version on the policy topic; every worker
                decides candidates created at or after the effective time
                (--at, or now + --in, default 60s) with it, without a restart.
                Only what a decision reads may change live (rules on/off,
                enforce/monitor, thresholds, rule look-back windows); settle,
                time, state and the send/id retention windows need a restart.
history         the versions applied, when each takes effect, who applied it
                (--json: the records, for `replay --offline --policy-history`)
rollback        publish again the version in force before the latest one""",
    )
    pol.add_argument("action", choices=["show", "check", "apply", "history", "rollback"])
    pol.add_argument("file", nargs="?", help="policy file (TOML or JSON)")
    pol.add_argument("--at", help="apply/rollback: effective time, RFC 3339, in the future")
    pol.add_argument(
        "--in",
        dest="lead",
        default=None,
        help="apply/rollback: effective this long from now (default 60s: time for every "
        "worker to read it first)",
    )
    pol.add_argument("--by", help="who applies it (default: your user name)")
    pol.add_argument("--note", help="why, kept with the version")
    pol.add_argument("--json", action="store_true", help="history: JSON lines")
    pol.set_defaults(fn=cmd_policy)


def cmd_policy(args: argparse.Namespace) -> int:
    if args.action == "show":
        policy = load_policy(args.file or settings().policy_file)
        sys.stdout.write(policy_as_toml(policy))
        return 0
    if args.action == "history":
        return _history(args)
    if args.action == "rollback":
        return _rollback(args)
    if not args.file:
        fail(f"policy {args.action} needs a FILE")
        return 2
    policy = load_policy(args.file)
    if args.action == "check":
        print(f"{args.file}: valid (version {policy.version})")
        return 0
    from streams.ops.policy_topic import effective_time, publish

    conf = kafka_settings()
    effective = effective_time(args.at, args.lead, now_ms())
    rec = publish(conf, policy, effective, by=args.by, note=args.note)
    print(
        f"applied {policy.version} as seq {rec.seq} on {conf.topics['policy']}: "
        f"candidates created from {rec.effective_at} on are decided by it "
        f"(see: {command('policy', 'history')})"
    )
    return 0


def _history(args: argparse.Namespace) -> int:
    from streams.core.clock import human_span, iso
    from streams.ops.policy_topic import current_history, read_records

    conf = kafka_settings()
    records = read_records(conf)
    now = now_ms()
    if args.json:
        for rec in records:
            print(orjson.dumps(rec.model_dump(mode="json")).decode())
        return 0
    hist = current_history(conf, records)
    in_force = hist.version_at(now)
    print(f"base (the workers' policy file): {hist.base.version}")
    if not records:
        print("no version applied live yet")
        return 0
    print(f"{'seq':>4}  {'version':<24} {'effective from':<25} {'applied by':<12} note")
    rejected = dict(hist.rejected)
    for rec in records:
        mark = "*" if in_force.seq == rec.seq else " "
        extra = f"rollback of {rec.rollback_of}" if rec.rollback_of else (rec.note or "")
        if rec.effective_ms > now:
            extra = f"(takes effect in {human_span(rec.effective_ms - now)}) {extra}"
        if rejected.get(rec.seq):
            extra = f"NOT APPLIED: {rejected[rec.seq]}"
        print(
            f"{rec.seq:>4}{mark} {rec.version:<24} {rec.effective_at:<25} "
            f"{rec.applied_by:<12} {extra}"
        )
    print(f"* in force now ({iso(now)}): {in_force.policy.version}"
          + (" (the base)" if in_force.record is None else ""))  # fmt: skip
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from streams.ops.policy_topic import RollbackRefused, rollback

    try:
        done = rollback(kafka_settings(), args.at, args.lead, by=args.by, note=args.note)
    except RollbackRefused as exc:
        fail(str(exc))
        return 1
    restored = done.restored.version
    print(
        f"rolled back {done.undone} -> {restored} (seq {done.record.seq}): candidates "
        f"created from {done.record.effective_at} on are decided by {restored}"
    )
    return 0
