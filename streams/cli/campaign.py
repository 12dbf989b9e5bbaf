"""``trigger-sanity campaign list|show|release|kill|resume|history``."""

from __future__ import annotations

import argparse

import orjson

from streams.cli.common import Subparsers, fail, kafka_settings, now_ms
from streams.hints import command

LEAD = "10s"
"""How far ahead of now a command takes effect by default."""


def add_campaign(sub: Subparsers) -> None:
    c = sub.add_parser(
        "campaign",
        help="the kill switch: list, show, release, kill or resume a campaign",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
A campaign is a message's campaign_id, else its trigger plus ":" and its
payload's template. With [blast] on in the policy, a campaign that sends the
same content to everyone, or loops, is tripped: its candidates are held until
you act or its hold_ttl passes (then suppressed: campaign_held_expired).

list            the campaigns ops have acted on, and their state now
show C          one campaign's commands: who, when, why
release C       send what the campaign holds (every rule still applies) and
                clear its trip
kill C          suppress what it holds and everything of it from then on
                (campaign_killed), until resume
resume C        end a kill
history         every command (--json: the records, for
                `replay --offline --campaign-history`)

Commands are records on the compacted campaigns topic with an effective event
time (--at, or now + --in, default 0s), so every worker, whatever its lag, and
an offline replay given the history apply them to the same candidates. A
worker whose stream time already passed the effective time when it reads a
command does not apply it (it logs an error): the default, 10 s from now,
leaves the workers time to read it.""",
    )
    c.add_argument("action", choices=["list", "show", "release", "kill", "resume", "history"])
    c.add_argument("campaign", nargs="?", help="the campaign (show, release, kill, resume)")
    c.add_argument("--reason", help="release/kill/resume: why (required, kept for good)")
    c.add_argument("--by", help="who (default: your user name)")
    c.add_argument("--at", help="effective time, RFC 3339 (default: now + --in)")
    c.add_argument(
        "--in",
        dest="lead",
        default=None,
        help=f"effective this long from now (default {LEAD}: every worker must read the "
        "command before its stream time passes it)",
    )
    c.add_argument("--json", action="store_true", help="list/show/history: JSON lines")
    c.set_defaults(fn=cmd_campaign)


def cmd_campaign(args: argparse.Namespace) -> int:
    from streams.ops.campaign_topic import campaigns, publish, read_records

    if args.action in ("show", "release", "kill", "resume") and not args.campaign:
        fail(f"campaign {args.action} needs a CAMPAIGN")
        return 2
    if args.action in ("release", "kill", "resume") and not (args.reason or "").strip():
        fail(f'campaign {args.action} needs --reason "...": the history keeps who, when and why')
        return 2
    conf = kafka_settings()
    records = read_records(conf)
    now = now_ms()
    if args.action in ("release", "kill", "resume"):
        from streams.ops.policy_topic import effective_time

        effective = effective_time(args.at, args.lead or LEAD, now)
        rec = publish(conf, args.campaign, args.action, effective, args.reason, args.by, records)
        print(
            f"{args.action} {rec.campaign}: seq {rec.seq} on {conf.topics['campaigns']}, "
            f"effective {rec.effective_at} (see: {command('campaign', 'show', rec.campaign)})"
        )
        return 0
    if args.action == "history" or (args.json and args.action == "list"):
        for r in records:
            print(orjson.dumps(r.model_dump(mode="json")).decode())
        return 0
    views = campaigns(records, now)
    if args.action == "show":
        view = views.get(args.campaign)
        if view is None:
            print(f"{args.campaign}: no command given (running)")
            return 0
        if args.json:
            for r in view.records:
                print(orjson.dumps(r.model_dump(mode="json")).decode())
            return 0
        print(f"{view.campaign}: {view.state}")
        for r in view.records:
            print(f"  seq {r.seq:>4}  {r.command:<8} effective {r.effective_at}  by {r.by}  "
                  f"at {r.applied_at}: {r.reason}")  # fmt: skip
        return 0
    if not views:
        print("no campaign command given yet")
        return 0
    print(f"{'campaign':<40} {'state':<9} last command")
    for v in sorted(views.values(), key=lambda v: v.campaign):
        last = v.records[-1]
        print(f"{v.campaign:<40} {v.state:<9} {last.command} by {last.by} "
              f"({last.effective_at}): {last.reason}")  # fmt: skip
    return 0
