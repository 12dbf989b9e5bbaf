"""``trigger-sanity stats``: decisions over a time range, from the output topics."""

from __future__ import annotations

import argparse

import orjson

from streams.cli.common import Subparsers, kafka_settings, now_ms
from streams.cli.worker_client import NoAnswer, WorkerClient


def add_stats(sub: Subparsers) -> None:
    sp = sub.add_parser(
        "stats",
        help="decisions over a time range: by action, rule, trigger, channel, per interval",
        description="Reads the output topics from --since (positioned by record time) and "
        "counts decisions by action, rule, trigger and channel, the suppression rate, dead "
        "letters and late evidence, and suppressions per rule per --interval so that a jump "
        "stands out. 'held now' comes from the worker's stats page when it answers.",
    )
    sp.add_argument("--since", default="1h", help="15m, 2h, 3d ago, or a time (default 1h)")
    sp.add_argument("--until", help="up to this time (default now)")
    sp.add_argument("--interval", help="bucket size, e.g. 5m (default: the range / 12)")
    sp.add_argument("--url", help="the worker's web address for 'held now'")
    sp.add_argument("--json", action="store_true", help="one JSON object")
    sp.set_defaults(fn=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    from streams.core.policy import parse_duration_ms
    from streams.ops.inspect import parse_when
    from streams.ops.stats import collect

    conf = kafka_settings()
    now = now_ms()
    since = parse_when(args.since, now)
    until = parse_when(args.until, now) if args.until else now
    span = max(1, until - since)
    interval = parse_duration_ms(args.interval) if args.interval else max(60_000, span // 12)
    stats = collect(conf, since, until, max(1000, interval))
    client = WorkerClient.of(conf, args.url)
    try:
        page = client.stats()
        stats.held_now = int(page.get("held", 0))
        stats.holds = {str(k): int(v) for k, v in (page.get("holds") or {}).items()}
        links = page.get("links")
        if isinstance(links, dict):
            stats.links = {str(k): int(v) for k, v in links.items() if isinstance(v, int)}
        found = page.get("campaigns")
        stats.campaigns = (
            [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
        )
        stats.held_source = f"the worker at {client.base_url}"
        tx = page.get("transactions")
        stats.transactions = tx if isinstance(tx, dict) else None
    except (NoAnswer, ValueError) as exc:
        stats.held_source = f"worker web page not reachable at {client.base_url}: {exc}"
    if args.json:
        print(orjson.dumps(stats.as_json()).decode())
    else:
        print(stats.render())
    return 0
