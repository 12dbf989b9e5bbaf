"""``trigger-sanity topics create|list``."""

from __future__ import annotations

import argparse

from streams.cli.common import Subparsers, settings


def add_topics(sub: Subparsers) -> None:
    t = sub.add_parser(
        "topics",
        help="create or list the contract's topics",
        description="create: every topic, co-partitioned (TRIGGER_SANITY_PARTITIONS, "
        "default 8), idempotently. list: partition counts.",
    )
    t.add_argument("action", choices=["create", "list"])
    t.set_defaults(fn=cmd_topics)


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.kafka.admin import admin_client, create_topics, partition_counts

    conf = settings()
    if args.action == "create":
        create_topics(conf)
        return 0
    admin = admin_client(conf)
    try:
        counts = partition_counts(admin, conf.topics.all)
    finally:
        admin.close()
    for name in conf.topics.all:
        print(f"{name}: {str(counts[name]) + ' partitions' if name in counts else 'missing'}")
    return 0 if len(counts) == len(conf.topics.all) else 1
