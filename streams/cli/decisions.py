"""``trigger-sanity inspect`` and ``explain``: the output topics read for people.

Both read without a consumer group, so looking never moves anyone's offsets.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from streams.cli.common import Subparsers, fail, kafka_settings, now_ms

TOPIC_ROLES: dict[str, tuple[str, ...]] = {
    "suppressed": ("suppressed",),
    "send-queue": ("send_queue",),
    "dead-letter": ("dead_letter",),
    "late-evidence": ("late_evidence",),
    "all": ("send_queue", "suppressed", "dead_letter", "late_evidence"),
}


def add_inspect(sub: Subparsers) -> None:
    i = sub.add_parser(
        "inspect",
        help="read decisions for people (suppressed, send-queue, ...)",
        description="A table of an output topic's records (age, rule or action, customer, "
        "trigger, message, reason), or --json lines for scripts. Reads without a consumer "
        "group: commits nothing, moves nobody's offsets. --since/--until position each "
        "partition by record time (the broker's time index), never scanning from the "
        "beginning; --customer reads only that customer's partition. Prints how many "
        "records were read and shown on stderr.",
    )
    i.add_argument("topic", choices=list(TOPIC_ROLES))
    i.add_argument("--rule", help="only this rule id (send-queue: also send, rewrite)")
    i.add_argument("--trigger", help="only this trigger (abandoned_cart, promotion, ...)")
    i.add_argument("--channel", help="only this channel (email, sms, push, in_app)")
    i.add_argument("--customer", help="only this customer id (reads one partition)")
    i.add_argument(
        "--campaign",
        help="only this campaign: its campaign_id, else trigger:template (promotion:bf-1)",
    )
    i.add_argument("--since", help="from this time: 15m, 2h, 3d ago, or 2026-11-22T10:00:00Z")
    i.add_argument("--until", help="up to this time (same forms as --since)")
    i.add_argument("--limit", type=int, default=0, help="stop after N records")
    i.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records")
    i.add_argument("--new", action="store_true", help="start at the end (with --follow)")
    i.add_argument("--json", action="store_true", help="one JSON object per record")
    i.set_defaults(fn=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    import shutil

    from streams.ops.inspect import (
        Filters,
        consume,
        json_line,
        parse_when,
        row_of,
        table_header,
        table_line,
    )

    conf = kafka_settings()
    now = now_ms()
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now) if args.until else None
    keep = Filters(args.rule, args.trigger, args.channel, args.customer, args.campaign)
    width = shutil.get_terminal_size((140, 24)).columns
    read: list[int] = []
    shown = 0
    records = consume(
        conf,
        TOPIC_ROLES[args.topic],
        from_beginning=not args.new,
        follow=args.follow,
        since_ms=since,
        until_ms=until,
        customer=args.customer,
        read=read,
    )
    if not args.json:  # after consume(): a missing topic fails before any output
        print(table_header(width), flush=True)
    for role, rec in records:
        row = row_of(role, rec.value, rec.key, rec.timestamp)
        if not keep(row):
            continue
        if args.json:
            sys.stdout.buffer.write(json_line(role, rec) + b"\n")
            sys.stdout.flush()
        elif row is None:
            print(f"[{role}] unreadable record at {rec.topic}[{rec.partition}]@{rec.offset}")
        else:
            print(table_line(row, int(time.time() * 1000), width), flush=True)
        shown += 1
        if args.limit and shown >= args.limit:
            break
    where = "the customer's partition" if args.customer else "every partition"
    print(
        f"{shown} shown of {sum(read)} read from {where}"
        + (" (positioned by time, not scanned)" if since is not None else ""),
        file=sys.stderr,
    )
    return 0


def add_explain(sub: Subparsers) -> None:
    e = sub.add_parser(
        "explain",
        help="where one message went, by which rule and policy, why, on what evidence",
        description="Reads send-queue, suppressed, dead-letter, late-evidence and releases "
        "for records naming MESSAGE_ID (without a consumer group). --customer reads only "
        "that customer's partition; --since positions by record time instead of reading "
        "from the beginning. Exit 1 when nothing names it.",
    )
    e.add_argument("message_id")
    e.add_argument("--customer", help="the message's customer id (reads one partition)")
    e.add_argument("--since", help="only records since: 15m, 2h, 7d ago, or a time")
    e.add_argument("--json", action="store_true", help="the records as one JSON object")
    e.add_argument(
        "--url",
        help="a worker's web address, asked whether a campaign trip holds a message not "
        "decided yet (default: TRIGGER_SANITY_WEB_* settings)",
    )
    e.set_defaults(fn=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from streams.cli.worker_client import NoAnswer, WorkerClient
    from streams.ops.explain import ROLES, explain
    from streams.ops.inspect import parse_when

    conf = kafka_settings()
    since = parse_when(args.since, now_ms()) if args.since else None
    story = explain(conf, args.message_id, args.customer, since)
    if not any(f.role in ("send_queue", "suppressed", "dead_letter") for f in story.records):
        # not decided yet: a campaign trip may hold it (only a worker knows)
        client = WorkerClient.of(conf, args.url)
        try:
            story.campaign_holds = list(client.held(args.message_id).get("campaign_holds") or [])
        except NoAnswer as exc:
            story.unasked = f"worker web page not reachable at {client.base_url}: {exc}"
    if not story.records and not story.campaign_holds:
        where = f"customer {args.customer}'s partition" if args.customer else "every partition"
        span = f"since {args.since}" if args.since else "from the beginning"
        topics = ", ".join(conf.topics[r] for r in ROLES)
        held = f"; {story.unasked}" if story.unasked else "; no campaign trip holds it"
        fail(f"{args.message_id} is not on {topics} ({where}, {span}){held}")
        return 1
    if args.json:
        print(orjson.dumps(story.as_json()).decode())
    else:
        print(story.render())
    return 0
