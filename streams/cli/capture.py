"""``trigger-sanity capture``: the input topics over a time range as a history file."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import Subparsers, kafka_settings, now_ms
from streams.contract.topics import INPUT_ROLES
from streams.hints import command


def add_capture(sub: Subparsers) -> None:
    cap = sub.add_parser(
        "capture",
        help="write the input topics over a time range as a history file",
        description="Reads purchases, returns, sessions, consents and outbound from --from "
        "to --to by record time (the broker's time index; nothing before the range is "
        "read; each partition stops at its first record after --to) and writes each "
        "record as a history line (topic, key, timestamp, value "
        "bytes as in Kafka). The file replays offline, or into other topics, to the "
        "decisions the workers made. Values that are not JSON are counted and left out.",
    )
    cap.add_argument("--from", dest="from_", required=True, help="2h, 3d ago, or a time")
    cap.add_argument("--to", help="up to this time (default now)")
    cap.add_argument("--out", required=True, help="history file to write (.jsonl)")
    cap.set_defaults(fn=cmd_capture)


def cmd_capture(args: argparse.Namespace) -> int:
    from streams.cli.progress import Progress
    from streams.ops.capture import capture
    from streams.ops.inspect import parse_when

    conf = kafka_settings()
    now = now_ms()
    start = parse_when(args.from_, now)
    end = parse_when(args.to, now) if args.to else now
    bar = Progress("captured")
    got = capture(conf, start, end, Path(args.out), bar.update)
    bar.done = got.records
    bar.finish()
    print(f"wrote {got.records:,} records ({iso_span(start, end)}) to {args.out}")
    for role in INPUT_ROLES:
        print(f"  {conf.topics[role]}: {got.counts.get(role, 0):,}")
    if got.skipped:
        print(f"  left out {len(got.skipped)} record(s) whose value is not JSON (dead letters):")
        for topic, p, off, why in got.skipped[:10]:
            print(f"    {topic}[{p}]@{off}: {why}")
    print(f"replay it with: {command('replay', args.out, '--offline')}")
    return 0


def iso_span(start: int, end: int) -> str:
    from streams.core.clock import iso

    return f"{iso(start)} .. {iso(end)}"
