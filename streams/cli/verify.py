"""``trigger-sanity verify``: every candidate decided exactly once?"""

from __future__ import annotations

import argparse

import orjson

from streams.cli.common import Subparsers, kafka_settings


def add_verify(sub: Subparsers) -> None:
    v = sub.add_parser(
        "verify",
        help="check that every candidate was decided exactly once (by message_id)",
        description="Reads outbound, send-queue, suppressed and dead-letter up to their end "
        "offsets and reports candidates in, decisions out, missing, duplicated (byte-identical "
        "or not) and, with --history, decisions that differ from the offline replay of the "
        "file the topics were filled from. Exit 0 when nothing is missing or different, 1 "
        "otherwise, 2 when Kafka cannot be reached.",
    )
    v.add_argument("--history", help="the history file produced into the topics")
    v.add_argument("--policy", help="policy for the offline replay (default: the worker's)")
    v.add_argument("--partitions", type=int, default=None, help="partitions for the replay")
    v.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    v.set_defaults(fn=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from streams.ops.verify import verify_topics

    result = verify_topics(kafka_settings(), args.history, args.policy, args.partitions)
    if args.json:
        print(orjson.dumps(result.as_dict()).decode())
    else:
        print(result.render())
    return 0 if result.ok else 1
