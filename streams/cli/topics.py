"""``trigger-sanity topics create|list``."""

from __future__ import annotations

import argparse

from streams.cli.common import Subparsers, fail, kafka_settings
from streams.hints import command


def add_topics(sub: Subparsers) -> None:
    t = sub.add_parser(
        "topics",
        help="create or list the contract's topics",
        description="create: every topic, co-partitioned (TRIGGER_SANITY_PARTITIONS, "
        "default 8), idempotently. list: partition counts, the app's internal topics "
        "marked as such; exit 2 naming what is missing.",
    )
    t.add_argument("action", choices=["create", "list"])
    t.set_defaults(fn=cmd_topics)


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.kafka.admin import admin_client, create_topics, partition_counts

    conf = kafka_settings()
    if args.action == "create":
        create_topics(conf)
        return 0
    internal = {
        conf.reroute_topic: "internal: re-routed records and progress markers",
        f"{conf.app_id}-customers-changelog": "internal: the worker's state (made by the worker)",
    }
    names = (*conf.topics.all, *internal)
    admin = admin_client(conf)
    try:
        counts = partition_counts(admin, names)
    finally:
        admin.close()
    for name in names:
        found = f"{counts[name]} partitions" if name in counts else "missing"
        why = internal.get(name)
        print(f"{name}: {found}" + (f" ({why})" if why else ""))
    missing = [n for n in (*conf.topics.all, conf.reroute_topic) if n not in counts]
    if missing:
        fail(f"missing: {', '.join(missing)}: create them with `{command('topics', 'create')}`")
        return 2
    return 0
