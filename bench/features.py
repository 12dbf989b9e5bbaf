"""The product's optional features, one switch each, for ``--features`` of the benchmarks.

A feature's cost is the throughput (or latency) it takes against the same input with it
off, so every benchmark that takes ``--features`` builds its policy, its input and its
guarantee from one set of these switches:

- ``campaigns``: ``[blast]`` on (every candidate through the whole-campaign gate);
- ``quiet_hours``: SMS and push not sent 21:00-08:00 local time (held, then decided);
- ``caps``: two cross-channel caps (marketing on any channel, mobile per day);
- ``links``: the input carries identity links (a third of purchases by guests linked
  at checkout); off, the same records without the ``identities`` topic;
- ``exactly_once``: transactions (off: at_least_once). Offline replay has no guarantee.

``--features all`` turns every one on, ``none`` every one off, ``each`` measures none,
then each alone, then all (the table of every feature's cost); a comma-separated list
turns on those named.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

FEATURES = ("campaigns", "quiet_hours", "caps", "links", "exactly_once")


def add_argument(ap: argparse.ArgumentParser, default: str | None = None) -> None:
    ap.add_argument(
        "--features",
        default=default,
        metavar="all|none|each|LIST",
        help="the optional features on: all, none, each (none, each alone, then all: every "
        f"feature's cost) or a comma-separated list of {', '.join(FEATURES)}",
    )


def feature_sets(spec: str) -> list[frozenset[str]]:
    """The runs ``--features`` asks for, in order."""
    everything = frozenset(FEATURES)
    if spec == "all":
        return [everything]
    if spec == "none":
        return [frozenset()]
    if spec == "each":
        return [frozenset(), *(frozenset({f}) for f in FEATURES), everything]
    named = frozenset(s.strip() for s in spec.split(",") if s.strip())
    unknown = named - everything
    if unknown:
        raise SystemExit(
            f"--features: unknown {', '.join(sorted(unknown))} (known: {', '.join(FEATURES)}, "
            "or all, none, each)"
        )
    return [named]


def label(features: frozenset[str]) -> str:
    if features == frozenset(FEATURES):
        return "all"
    if not features:
        return "none"
    return "+".join(f for f in FEATURES if f in features)


def policy_text(
    features: frozenset[str], settle: str = "", quiet: tuple[str, str] | None = None
) -> str:
    """The policy file of a feature set. ``settle``: a ``[settle]`` body (the latency
    benchmark decides at once); ``quiet``: the quiet window (start, end), default
    21:00-08:00 (a live benchmark puts it where the clock is not)."""
    name = label(features)
    lines = [f'version = "bench-{name}"']
    if settle:
        lines += ["[settle]", settle]
    if "campaigns" in features:
        lines += ["[blast]", "enabled = true"]
    if "quiet_hours" in features:
        start, end = quiet or ("21:00", "08:00")
        lines += [
            "[quiet_hours]",
            f'start = "{start}"',
            f'end = "{end}"',
            'channels = ["sms", "push"]',
            'default_timezone = "UTC"',
            'spread = "30m"',
        ]
    if "caps" in features:
        # overflow "suppress": [blast] and deferring caps cannot be on together yet
        lines += [
            "[[caps]]",
            'name = "marketing-any-channel"',
            "limit = 5",
            'window = "24h"',
            "[[caps]]",
            'name = "mobile"',
            'channels = ["sms", "push"]',
            "limit = 2",
            'window = "24h"',
        ]
    return "\n".join(lines) + "\n"


def guarantee(features: frozenset[str]) -> str:
    return "exactly_once" if "exactly_once" in features else "at_least_once"


def tidy_records(customers: int, features: frozenset[str], seed: int = 5) -> list[dict[str, Any]]:
    """The tidy generated history (``generate``: the backlog the worker's throughput is
    quoted on); with ``links``, a third of the purchases (by order id) made by a guest id
    linked to the customer 30 s after checkout, as ``generate --profile realistic
    --links`` does it. Every record keeps its place in event-time order."""
    from streams.core.clock import to_ms
    from streams.offline.generator import generate
    from streams.offline.links import GuestCheckouts

    records = generate(customers, seed=seed)
    if "links" not in features:
        return records
    guests = GuestCheckouts()
    links: list[tuple[int, dict[str, Any]]] = []
    for rec in records:
        v = rec["value"]
        if rec["topic"] != "purchases":
            continue
        buyer = guests.buyer(v["customer_id"], v["order_id"])
        if buyer != v["customer_id"]:
            at = to_ms(datetime.fromisoformat(v["occurred_at"]))
            link = guests.link(v["customer_id"], at)
            v["customer_id"] = buyer
            if link is not None:
                links.append(link)
    out: list[tuple[int, int, dict[str, Any]]] = [
        (
            to_ms(
                datetime.fromisoformat(r["value"].get("occurred_at") or r["value"]["created_at"])
            ),
            i,
            r,
        )
        for i, r in enumerate(records)
    ]
    out += [(t, len(out) + i, {"topic": "identities", "value": rec["value"]})
            for i, (t, rec) in enumerate(links)]  # fmt: skip
    out.sort(key=lambda x: (x[0], x[1]))
    return [r for _t, _i, r in out]


def write_input(
    path: Path, customers: int, features: frozenset[str], seed: int = 5
) -> tuple[int, int]:
    """The realistic field history with every feature's stories (whole campaigns, quiet
    hours and caps, linked guests); without ``links``, the same records less the
    ``identities`` topic. Returns (records, candidates)."""
    from streams.offline.scenarios import write_realistic

    full = path.with_suffix(".all.jsonl")
    n, candidates = write_realistic(full, path.with_suffix(".truth.jsonl"), customers, seed,
                                    blast=True, holds=True, links=True)  # fmt: skip
    if "links" in features:
        full.replace(path)
        return n, candidates
    kept = 0
    with open(full, "rb") as src, open(path, "wb") as dst:
        for line in src:
            if orjson.loads(line).get("topic") != "identities":
                dst.write(line)
                kept += 1
    full.unlink()
    return kept, candidates
