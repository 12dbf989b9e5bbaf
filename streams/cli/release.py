"""``trigger-sanity release``: send one suppressed message anyway, on record."""

from __future__ import annotations

import argparse

from streams.cli.common import Subparsers, fail, kafka_settings, now_ms


def add_release(sub: Subparsers) -> None:
    rel = sub.add_parser(
        "release",
        help="send a suppressed message anyway, once, on record",
        description="Forwards the suppressed message MESSAGE_ID to the send queue with "
        "sanity.released (who, when, why, the rule overridden) and records the same on the "
        "releases topic, in one Kafka transaction: a second release of the same message is "
        "refused (exit 1) saying when and by whom; works with the workers down. Looks for "
        "the suppression in the last 7 days unless --since says otherwise.",
    )
    rel.add_argument("message_id")
    rel.add_argument("--reason", required=True, help="why it is released (kept on record)")
    rel.add_argument("--by", help="who releases it (default: your user name)")
    rel.add_argument("--customer", help="the message's customer id (reads one partition)")
    rel.add_argument("--since", help="look for the suppression since: 30d, or a time")
    rel.set_defaults(fn=cmd_release)


def cmd_release(args: argparse.Namespace) -> int:
    from streams.ops.inspect import parse_when
    from streams.ops.release import Refused, release

    conf = kafka_settings()
    since = parse_when(args.since, now_ms()) if args.since else None
    try:
        audit = release(conf, args.message_id, args.reason, args.by, args.customer, since)
    except Refused as exc:
        fail(str(exc))
        return 1
    print(
        f"released {audit['message_id']} (customer {audit['customer_id']}, suppressed by "
        f"{audit['rule']}) to {conf.topics['send_queue']}; recorded on "
        f"{conf.topics['releases']} as released by {audit['released_by']} at "
        f"{audit['released_at']}"
    )
    return 0
