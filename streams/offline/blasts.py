"""Whole-campaign cases for realistic histories (``generate --profile realistic --blast``).

Four campaigns in one 15-minute window, each message to a customer of its own
(so no per-message rule has a say), built so that the contract's ``[blast]``
defaults decide them for a reason the case states:

- ``recs-blast``: a recommender that falls back to its defaults. 325
  personalised recommendations, then identical ones. The window reaches
  30% identical content at the 140th identical one (140 of 465): it trips
  there, and that one and every later one are held and expire;
- ``recs-personal``: the same size and rate, every message different: never
  trips;
- ``promo-all``: a promotion identical for everyone, by design: promotions are
  not checked for identical content, and it is a launch (no earlier window),
  so its volume cannot trip it either;
- ``journey-loop``: a journey that sends 30 a window for four windows the day
  before, then loops: the window's 301st message is more than 10 times the
  median of 30, and trips it.

The counts are exact because of how the cases are built, not by running the
detection: the personalised run is a multiple of 65 distinct contents, which
leaves the 64 fingerprint counters empty (see ``streams.core.campaigns``), so
every identical message after it is counted.

The truth holds for a policy with ``[blast] enabled = true`` and the other
``[blast]`` settings at their defaults (``policies/blast.toml``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.offline.scenarios import DAY, Truth, _iso

WINDOW = 15 * 60_000
PERSONALISED = 325  # a multiple of COUNTERS + 1 (65): the counters are empty after it
TRIP_AT = 140  # the identical message that trips it: 140 >= 0.3 * (325 + 140)
IDENTICAL = 400
LOOP_BASE = 30  # per window, for four windows the day before
LOOP_TRIP = 301  # the first message above 10 x 30


def _message(
    mid: str, cid: str, t: int, trigger: str, campaign: str, context: dict[str, Any],
    template: str,
) -> dict[str, Any]:  # fmt: skip
    return {
        "topic": "outbound",
        "timestamp": _iso(t),
        "value": {
            "message_id": mid,
            "customer_id": cid,
            "created_at": _iso(t),
            "trigger": trigger,
            "channel": "email",
            "category": "marketing",
            "campaign_id": campaign,
            "context": context,
            "payload": {"template": template},
        },
    }


def blast_cases(at: int) -> Iterator[tuple[dict[str, Any], Truth]]:
    """The four campaigns in the window starting at or after ``at`` (aligned), each
    record with its truth; in record-time order per campaign."""
    start = at - at % WINDOW + WINDOW
    n = PERSONALISED + IDENTICAL
    step = (WINDOW - 60_000) // n  # every message inside the window
    for i in range(n):
        t = start + i * step
        mid, cid = f"blast-{i:04d}", f"b{i:05d}"
        if i < PERSONALISED:
            skus = [f"SKU-P{i}-a", f"SKU-P{i}-b"]
            truth = Truth(mid, cid, "send", None, "blast",
                          "personalised recommendation before the fallback")  # fmt: skip
        else:
            k = i - PERSONALISED + 1  # the k-th identical one
            skus = ["SKU-X1", "SKU-X2", "SKU-X3"]
            if k < TRIP_AT:
                why = f"identical #{k}: under 30% of the window's {PERSONALISED + k}"
                truth = Truth(mid, cid, "send", None, "blast", why)
            else:
                truth = Truth(mid, cid, "suppress", "campaign_held_expired", "blast",
                              "held from the trip at identical #140 (30% of 465); nobody "
                              "released it")  # fmt: skip
        yield _message(mid, cid, t, "product_recommendation", "recs-blast",
                       {"skus": skus}, "recs"), truth  # fmt: skip
        mid, cid = f"personal-{i:04d}", f"q{i:05d}"
        yield (
            _message(mid, cid, t + step // 2, "product_recommendation", "recs-personal",
                     {"skus": [f"SKU-Q{i}-a", f"SKU-Q{i}-b"]}, "recs"),
            Truth(mid, cid, "send", None, "blast", "every recommendation different"),
        )  # fmt: skip
        mid, cid = f"promo-{i:04d}", f"o{i:05d}"
        yield (
            _message(mid, cid, t + step // 3, "promotion", "promo-all", {}, "promo-all"),
            Truth(mid, cid, "send", None, "blast",
                  "a promotion is the same for everyone by design; a launch has no volume "
                  "baseline"),
        )  # fmt: skip
    yield from _loop(start)


def _loop(start: int) -> Iterator[tuple[dict[str, Any], Truth]]:
    n = 0
    for w in range(4):
        base = start - DAY + w * WINDOW
        for i in range(LOOP_BASE):
            n += 1
            mid, cid = f"loop-{n:04d}", f"j{n:05d}"
            yield (
                _message(mid, cid, base + i * 10_000, "promotion", "journey-loop", {}, "loop"),
                Truth(mid, cid, "send", None, "blast", "the journey's usual volume"),
            )  # fmt: skip
    step = (WINDOW - 60_000) // 400
    for i in range(400):
        n += 1
        mid, cid = f"loop-{n:04d}", f"j{n:05d}"
        t = start + i * step + 7
        if i + 1 < LOOP_TRIP:
            truth = Truth(mid, cid, "send", None, "blast", "looping, not yet 10x its median")
        else:
            truth = Truth(mid, cid, "suppress", "campaign_held_expired", "blast",
                          "held from the trip at the 301st (10x the median of 30)")  # fmt: skip
        yield _message(mid, cid, t, "promotion", "journey-loop", {}, "loop"), truth
