"""Campaigns ([blast]): fingerprints, window edges, trips, holds and the kill switch.

The book is fed in the gate's global order; the offline cases run through the
same path as ``trigger-sanity replay --offline`` and check that a trip lands on
the same candidate whatever the partition count or file order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.campaign_history import CampaignRecord
from streams.core.campaigns import Book, fingerprint
from streams.core.candidate import campaign_of
from streams.core.clock import iso, to_ms
from streams.core.policy import Blast, Policy, policy_from_mapping
from streams.offline.replay import replay_offline
from tests.helpers import write_history

PERSONALISED = ("product_recommendation", "replenishment", "abandoned_cart")
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WINDOW = 15 * 60_000


def blast_policy(**blast: Any) -> Policy:
    return policy_from_mapping({"blast": {"enabled": True, **blast}})


# ---------------------------------------------------------------- campaign and fingerprint


@pytest.mark.parametrize(
    ("trigger", "payload", "campaign_id", "expected"),
    [
        ("promotion", {"template": "bf-1"}, None, "promotion:bf-1"),
        ("promotion", {}, None, "promotion"),
        ("promotion", {"template": 7}, None, "promotion"),  # only a string template names it
        ("promotion", {"template": "bf-1"}, "black-friday", "black-friday"),
    ],
    ids=["template", "no_template", "template_not_a_string", "campaign_id_wins"],
)
def test_campaign_of(
    trigger: str, payload: dict[str, Any], campaign_id: str | None, expected: str
) -> None:
    assert campaign_of(trigger, payload, campaign_id) == expected


def test_fingerprint_is_the_sorted_sku_set_of_personalised_triggers_only() -> None:
    a = fingerprint("product_recommendation", ("B", "A", "C"), PERSONALISED)
    assert a == fingerprint("product_recommendation", ("C", "A", "B", "A"), PERSONALISED)
    assert a != fingerprint("product_recommendation", ("A", "B"), PERSONALISED)
    assert a.endswith(":A,B,C")
    assert fingerprint("promotion", ("A",), PERSONALISED) == ""  # same for everyone by design
    assert fingerprint("product_recommendation", (), PERSONALISED) == ""  # nothing left


# ---------------------------------------------------------------- the book


def feed(book: Book, n: int, start_ms: int, step_ms: int, fp: str, camp: str = "c") -> list[str]:
    out = []
    for i in range(n):
        t = start_ms + i * step_ms
        out.append(book.admit(camp, t, f"m{start_ms}-{i:06d}", t, fp))
    return out


def test_identical_content_trips_at_min_messages() -> None:
    book = Book(Blast(enabled=True))
    start = to_ms(T0)
    verdicts = feed(book, 300, start, 1000, "fp-same")
    assert verdicts[:199] == ["pass"] * 199
    assert verdicts[199:] == ["hold"] * 101  # the 200th trips and is held itself
    (trip,) = book.trips
    assert (trip.kind, trip.count, trip.top, trip.held) == ("share", 200, 200, 101)


def test_personalised_content_never_trips() -> None:
    book = Book(Blast(enabled=True))
    start = to_ms(T0)
    for i in range(2000):
        assert book.admit("c", start + i * 300, f"m{i:05d}", start + i * 300, f"fp-{i}") == "pass"
    assert book.trips == []


def test_unchecked_triggers_never_trip_on_content() -> None:
    """A promotion is the same for everyone: its fingerprint is empty, not counted."""
    book = Book(Blast(enabled=True))
    assert set(feed(book, 1000, to_ms(T0), 500, "")) == {"pass"}


def test_a_window_boundary_starts_the_count_again() -> None:
    """Windows are aligned to the epoch: a message exactly at 10:15:00 is the next
    window's first, so 199 + 199 identical ones on either side never trip."""
    book = Book(Blast(enabled=True))
    end = to_ms(T0) + WINDOW  # 10:15:00.000
    before = feed(book, 199, end - 199, 1, "fp")  # 10:14:59.801 .. 10:14:59.999
    at_edge = book.admit("c", end, "edge", end, "fp")
    after = feed(book, 198, end + 1, 1, "fp")
    assert set(before) == {"pass"} and at_edge == "pass" and set(after) == {"pass"}
    assert book.admit("c", end + 500, "the-200th", end + 500, "fp") == "hold"
    assert book.trips[0].window_start == end


def test_a_launch_never_trips_on_volume_but_a_loop_does() -> None:
    book = Book(Blast(enabled=True, min_messages=50))
    start = to_ms(T0)
    # launch: 600 personalised candidates in its first window, no earlier window
    for i in range(600):
        t = start + i * 1000
        assert book.admit("j", t, f"a{i:04d}", t, f"fp-{i}") == "pass"
    # the next day, four ordinary windows of 30 each
    day = start + 86_400_000
    for w in range(4):
        for i in range(30):
            t = day + w * WINDOW + i * 1000
            assert book.admit("j", t, f"b{w}{i:03d}", t, f"fp-{w}-{i}") == "pass"
    # then a loop: ten times the median (30 -> median of [600, 30, 30, 30, 30] = 30)
    loop = day + 5 * WINDOW
    verdicts = [book.admit("j", loop + i * 100, f"c{i:04d}", loop + i * 100, f"fp-l-{i}")
                for i in range(400)]  # fmt: skip
    first_hold = verdicts.index("hold")
    assert first_hold == 300  # the 301st: more than 10 x 30, and at least min_messages
    assert book.trips[-1].kind == "volume" and book.trips[-1].median == 30


def test_release_starts_the_window_over_and_kill_holds_until_resume() -> None:
    from streams.core.campaigns import Order

    book = Book(Blast(enabled=True))
    start = to_ms(T0)
    feed(book, 250, start, 100, "fp")
    assert book.tripped("c") is not None
    book.apply(Order("c", "release", start + 30_000, 1, "ops", "intended"))
    assert book.tripped("c") is None
    assert feed(book, 199, start + 30_000, 10, "fp") == ["pass"] * 199
    book.apply(Order("c", "kill", start + 40_000, 2, "ops", "broken"))
    assert book.admit("c", start + 40_001, "k", start + 40_001, "other") == "kill"
    book.apply(Order("c", "resume", start + 50_000, 3, "ops", "fixed"))
    # resumed, but the window still counts 199 of one content: the next one trips it
    assert book.admit("c", start + 50_001, "r", start + 50_001, "fp") == "hold"
    nxt = start + WINDOW  # a new window starts empty
    assert book.admit("c", nxt, "n", nxt, "fp") == "hold"  # still tripped: ops must act


# ---------------------------------------------------------------- offline, end to end


def blast_history(n: int = 1500, blast_after: int = 300, seed: int = 1) -> list[dict[str, Any]]:
    """One recommendation per customer every 300 ms; after ``blast_after`` messages 80%
    carry the same three SKUs (a recommender that fell back to its defaults)."""
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        t = T0 + timedelta(milliseconds=300 * i)
        same = i >= blast_after and rng.random() < 0.8
        skus = ["SKU-A", "SKU-B", "SKU-C"] if same else [f"SKU-{rng.randint(1, 9999)}"
                                                          for _ in range(3)]  # fmt: skip
        recs.append({"topic": "outbound", "value": {
            "message_id": f"m{i:05d}", "customer_id": f"c{i:05d}",
            "created_at": iso(to_ms(t)), "trigger": "product_recommendation",
            "channel": "email", "campaign_id": "recs", "context": {"skus": skus},
            "payload": {"template": "recs"}}})  # fmt: skip
    return recs


def replay(
    tmp_path: Path, records: list[dict[str, Any]], policy: Policy, partitions: int,
    orders: list[CampaignRecord] | None = None,
) -> tuple[dict[str, tuple[str, str | None]], Any]:  # fmt: skip
    path = tmp_path / f"h{partitions}.jsonl"
    write_history(path, records)
    out = tmp_path / f"d{partitions}.jsonl"
    with open(out, "wb") as fh:
        summary = replay_offline(path, policy, fh, partitions=partitions,
                                 orders=[o.order() for o in orders or []])  # fmt: skip
    got = {}
    for line in out.read_bytes().splitlines():
        d = orjson.loads(line)
        got[d["message_id"]] = (d["action"], d["rule"])
    return got, summary


def command(seq: int, what: str, at_ms: int, reason: str = "ops said so") -> CampaignRecord:
    return CampaignRecord.model_validate(
        {"seq": seq, "campaign": "recs", "command": what, "effective_at": iso(at_ms),
         "effective_ms": at_ms, "by": "ops", "applied_at": iso(at_ms), "reason": reason}
    )  # fmt: skip


def test_a_blast_trips_and_its_held_candidates_expire_the_same_at_any_partition_count(
    tmp_path: Path,
) -> None:
    records = blast_history()
    policy = blast_policy()
    runs = [replay(tmp_path, records, policy, n) for n in (1, 3, 8)]
    assert runs[0][0] == runs[1][0] == runs[2][0]
    got, summary = runs[0]
    (trip,) = summary.trips
    sent_identical = sum(
        1 for i, r in enumerate(records)
        if r["value"]["context"]["skus"][0] == "SKU-A" and got[f"m{i:05d}"][0] == "send"
    )  # fmt: skip
    assert sent_identical < policy.blast.min_messages
    held = [m for m, d in got.items() if d == ("suppress", "campaign_held_expired")]
    assert len(held) == summary.campaign_held == trip.held
    assert all(got[m][0] == "send" for m in sorted(got) if m < trip.message_id)


def test_how_partitions_interleave_does_not_move_the_trip(tmp_path: Path) -> None:
    """The same streams, interleaved otherwise (every record of partition 0 first, then
    partition 1, ...; as a capture of live topics can be): the same decisions."""
    from streams.contract.partitioning import partition_for

    records = blast_history()
    policy = blast_policy()
    blocked = sorted(records, key=lambda r: partition_for(r["value"]["customer_id"], 4))
    a, _ = replay(tmp_path, records, policy, 4)
    other = tmp_path / "blocked"
    other.mkdir()
    b, _ = replay(other, blocked, policy, 4)
    assert a == b


def test_release_sends_what_is_held_then_a_second_trip_is_bounded_and_kill_suppresses(
    tmp_path: Path,
) -> None:
    records = blast_history()
    start = to_ms(T0)
    orders = [command(1, "release", start + 200_000, "the bundle is intended"),
              command(2, "kill", start + 350_000, "it is broken after all")]  # fmt: skip
    got, summary = replay(tmp_path, records, blast_policy(), 4, orders)
    first, second = summary.trips
    assert first.at_ms < start + 200_000 < second.at_ms
    by_time = {f"m{i:05d}": start + 300 * i for i in range(len(records))}
    # held by the first trip, released at 200 s: sent
    released = [m for m in got if first.at_ms <= by_time[m] < start + 200_000]
    assert released and all(got[m][0] == "send" for m in released)
    # after the release the window starts over: at most min_messages - 1 go out first
    between = [m for m in got if start + 200_000 <= by_time[m] < second.at_ms]
    assert len(between) == 199
    # held by the second trip and everything after the kill: campaign_killed
    killed = [m for m in got if by_time[m] >= second.at_ms]
    assert killed and all(got[m] == ("suppress", "campaign_killed") for m in killed)


def test_rules_still_apply_when_a_held_candidate_is_released(tmp_path: Path) -> None:
    """A customer who withdrew email consent while the campaign was held is not mailed
    at release: the candidate is decided again, with every rule, as of the release."""
    records = blast_history(n=600)
    start = to_ms(T0)
    held = records[560]["value"]  # created at 168 s, after the trip (about 151 s)
    records.append({"topic": "consents", "value": {
        "event_id": "k-1", "customer_id": held["customer_id"], "occurred_at": iso(start + 170_000),
        "channel": "email", "status": "withdrawn"}})  # fmt: skip
    records.sort(key=lambda r: r["value"].get("created_at") or r["value"]["occurred_at"])
    orders = [command(1, "release", start + 175_000)]
    got, summary = replay(tmp_path, records, blast_policy(), 1, orders)
    assert summary.trips[0].at_ms < start + 168_000
    assert got[held["message_id"]] == ("suppress", "consent_withdrawn")
    assert got[records[-1]["value"]["message_id"]][0] == "send"  # released, nothing against it


def test_blast_off_changes_no_decision(tmp_path: Path) -> None:
    records = blast_history(n=600)
    off, summary = replay(tmp_path, records, Policy(), 4)
    assert set(off.values()) == {("send", None)} and summary.trips == []


def test_the_fingerprint_is_the_content_after_rewrites(tmp_path: Path) -> None:
    """Customers who just bought SKU-A get the bundle without it: the content that trips
    the campaign is what would be sent, [SKU-B, SKU-C]."""
    records: list[dict[str, Any]] = []
    for i in range(220):
        t = to_ms(T0) + i * 1000
        cid = f"c{i:04d}"
        if i % 4:
            records.append({"topic": "purchases", "value": {
                "event_id": f"p{i}", "customer_id": cid, "occurred_at": iso(t - 86_400_000),
                "order_id": f"o{i}", "items": [{"sku": "SKU-A", "quantity": 1}]}})  # fmt: skip
        records.append({"topic": "outbound", "value": {
            "message_id": f"m{i:04d}", "customer_id": cid, "created_at": iso(t),
            "trigger": "product_recommendation", "channel": "email", "campaign_id": "recs",
            "context": {"skus": ["SKU-A", "SKU-B", "SKU-C"]}}})  # fmt: skip
    records.sort(key=lambda r: r["value"].get("created_at") or r["value"]["occurred_at"])
    got, summary = replay(tmp_path, records, blast_policy(), 2)
    (trip,) = summary.trips
    assert trip.fingerprint.endswith(":SKU-B,SKU-C") and trip.count == 200
    assert got["m0001"] == ("rewrite", "recommends_recent_purchase")
