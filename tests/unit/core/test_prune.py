"""The prune marker (``CustomerState.due``) never changes a state.

A prune that stops at the marker must leave exactly what a full prune leaves, after
every record and every release: the same facts, orders, sends, decided ids and epochs,
so the same decisions and the same encoded changelog value. The reference engine below
forgets every marker before it prunes, which makes every prune a full one (the code
before the marker); the engine under test keeps them. Histories are chosen so that
pruning really happens: the smallest caps the policy allows, windows as short as the
rules permit, customers active for months with gaps longer than their TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contract import decode as codec
from streams.contract.history import INPUT_TOPICS, HistoryRecord, parse_line
from streams.contract.partitioning import partition_for
from streams.core.encoding import encode
from streams.core.engine import Engine
from streams.core.outcomes import Decided, LateFinding, Output
from streams.core.policy import DEFAULT_POLICY, Policy, policy_from_mapping
from streams.core.state import NEVER, CustomerState, Horizons
from streams.core.store import MemoryStore
from streams.offline.generator import generate
from streams.offline.scenarios import realistic
from tests.helpers import hot_customers, iso_s

TIGHT = policy_from_mapping(
    {
        "state": {
            "retention": "35d",
            "order_retention": "36d",
            "customer_ttl": "40d",
            "max_events": 10,
            "max_sends": 10,
            "max_message_ids": 10,
            "max_orders": 10,
        }
    }
)

SHORT_ORDERS = policy_from_mapping(
    {"state": {"retention": "35d", "order_retention": "10d", "customer_ttl": "40d"}}
)
"""Orders kept for less time than events: an order can be due before any fact is."""


class FullPrune(Engine):
    """Every prune a full one: the marker is forgotten first."""

    def _prune(self, h: Horizons, state: CustomerState) -> None:
        state.due = NEVER
        super()._prune(h, state)


def realistic_records(customers: int, days: int) -> list[dict[str, Any]]:
    return [rec for rec, _truth in realistic(customers, seed=3, days=days) if rec is not None]


def _key(o: Output) -> tuple[Any, ...]:
    if isinstance(o, Decided):
        return ("decided", o.candidate.message_id, o.decision)
    if isinstance(o, LateFinding):
        return ("late", o.sent.message_id, o.rule, o.event, o.would)
    return ("failed", o.candidate.message_id, o.error)


def _steps(records: list[dict[str, Any]], partitions: int) -> Iterator[tuple[int, Any, int]]:
    for i, rec in enumerate(records, 1):
        hr = parse_line(i, orjson.dumps(rec))
        assert isinstance(hr, HistoryRecord), hr
        ms = hr.record_ms if hr.record_ms is not None else (hr.event_ms or 0)
        yield partition_for(hr.customer_id or "", partitions), hr, ms


def run_both(records: list[dict[str, Any]], policy: Policy, partitions: int = 4) -> int:
    """Feed both engines the same records; compare after every step. Returns how many
    prunes the marker let stop early (so a test can ask that it was exercised)."""
    test = Engine(policy, MemoryStore(), partitions)
    ref = FullPrune(policy, MemoryStore(), partitions)
    for e in (test, ref):
        for p in range(partitions):
            for t in INPUT_TOPICS:
                e.clock(p).set_idle(t, False)
    skipped = 0
    calls = 0
    real = CustomerState.prune

    def counting(state: CustomerState, h: Horizons, caps: Any) -> None:
        nonlocal skipped, calls
        before = state.due
        calls += 1
        real(state, h, caps)
        if state.due == before and h.at <= before:
            skipped += 1

    for n, (part, hr, ms) in enumerate(_steps(records, partitions)):
        parsed = codec.decode(hr.topic, hr.value, ms, ms, policy)
        assert isinstance(parsed, codec.Parsed), parsed
        outs = []
        for e in (test, ref):
            fact = codec.decode(hr.topic, hr.value, ms, ms, policy)
            assert isinstance(fact, codec.Parsed)
            if e is test:
                CustomerState.prune = counting  # type: ignore[method-assign]
            try:
                got = e.ingest(part, fact.kind, fact.customer_id, fact.event_ms, fact.fact, ms)
                got += e.release(part, ms)
            finally:
                CustomerState.prune = real  # type: ignore[method-assign]
            outs.append([_key(o) for o in got])
        assert outs[0] == outs[1], f"record {n}: outputs differ"
        a, b = test.store.get(parsed.customer_id), ref.store.get(parsed.customer_id)
        assert a is not None and b is not None
        assert encode(a) == encode(b), f"record {n}: state of {parsed.customer_id} differs"
        if n % 500 == 499:
            assert test.sweep(lambda c: partition_for(c, partitions)) == ref.sweep(
                lambda c: partition_for(c, partitions)
            )
    assert [_key(o) for o in test.flush(0)] == [_key(o) for o in ref.flush(0)]
    assert isinstance(test.store, MemoryStore) and isinstance(ref.store, MemoryStore)
    assert {k: encode(v) for k, v in test.store.data.items()} == {
        k: encode(v) for k, v in ref.store.data.items()
    }
    assert calls > 0
    return skipped


@pytest.mark.parametrize(
    ("records", "policy"),
    [
        pytest.param(generate(300, seed=5), DEFAULT_POLICY, id="tidy_history_default_policy"),
        pytest.param(generate(300, seed=6), TIGHT, id="tidy_history_smallest_caps"),
        pytest.param(realistic_records(400, 120), TIGHT, id="realistic_four_months_tight"),
        pytest.param(hot_customers(6, 400, 1), TIGHT, id="hot_customers_with_new_epochs"),
        pytest.param(hot_customers(4, 300, 2), DEFAULT_POLICY, id="hot_customers_default"),
        pytest.param(hot_customers(8, 400, 3, disorder=60), TIGHT, id="events_read_weeks_late"),
        pytest.param(hot_customers(8, 400, 4, disorder=400), TIGHT, id="events_read_months_late"),
        pytest.param(hot_customers(8, 300, 5, disorder=30), SHORT_ORDERS, id="orders_kept_shorter"),
    ],
)
def test_a_prune_stopped_by_the_marker_leaves_what_a_full_prune_leaves(
    records: list[dict[str, Any]], policy: Policy
) -> None:
    skipped = run_both(records, policy)
    assert skipped > len(records) // 4  # the marker did stop most prunes


def test_the_marker_stops_a_prune_only_while_nothing_is_due(tmp_path: Path) -> None:
    """A purchase ages past the retention: the prune that drops it is not skipped."""
    policy = TIGHT
    engine = Engine(policy, MemoryStore())
    clock = engine.clock(0)
    for t in INPUT_TOPICS:
        clock.set_idle(t, True)
    base = datetime(2026, 3, 1, tzinfo=UTC)

    def purchase(eid: str, day: int) -> None:
        t = iso_s(base + timedelta(days=day))
        raw = orjson.dumps({"event_id": eid, "customer_id": "c", "occurred_at": t,
                            "order_id": eid, "items": [{"sku": "A"}]})  # fmt: skip
        ms = int((base + timedelta(days=day)).timestamp() * 1000)
        p = codec.decode("purchases", raw, ms, ms, policy)
        assert isinstance(p, codec.Parsed)
        engine.ingest(0, p.kind, p.customer_id, p.event_ms, p.fact, ms)

    purchase("first", 0)
    st = engine.store.get("c")
    assert st is not None and st.due > NEVER
    purchase("second", 10)
    assert [p.event_id for p in st.purchases] == ["first", "second"]
    purchase("third", 36)  # stream time 36 days on: "first" is past the 35-day retention
    assert [p.event_id for p in st.purchases] == ["second", "third"]
    assert set(st.orders) == {"first", "second", "third"}  # order_retention is 36 days
    purchase("fourth", 37)
    assert set(st.orders) == {"second", "third", "fourth"}


def test_a_message_produced_again_and_again_long_after_its_time_does_not_pile_up() -> None:
    """Each copy read two months after its creation is sent again (the id is no longer
    remembered) and kept for late evidence only; past LATE_KEPT the oldest go, and an
    event read after the last copy still finds it."""
    from streams.core.state import LATE_KEPT
    from tests.helpers import feed as feed_one
    from tests.helpers import msg, purchase

    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed_one(engine, msg("ahead", "promotion", "2027-01-20T10:00:00Z", cid="c-99"))
    feed_one(engine, purchase("2027-01-20T10:00:00Z", cid="c-99"))
    engine.release(0, 0)
    actions = []
    for _ in range(3 * LATE_KEPT):
        feed_one(engine, msg("again", "welcome", "10:00"))
        actions += [o.decision.action for o in engine.release(0, 0) if isinstance(o, Decided)]
    assert actions == ["send"] * (3 * LATE_KEPT)
    st = engine.store.get("c-42")
    assert st is not None and len(st.sent) == LATE_KEPT
    late = feed_one(engine, purchase("09:00"))  # an existing customer: welcome contradicted
    kept = list(range(2 * LATE_KEPT + 1, 3 * LATE_KEPT + 1))  # the newest copies
    assert [f.sent.seq for f in late if isinstance(f, LateFinding)] == kept
