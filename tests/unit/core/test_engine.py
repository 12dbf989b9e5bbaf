"""Holding, deadline order, live/offline parity, late evidence, restore, bounded state."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contract import decode as codec
from streams.contract.history import INPUT_TOPICS
from streams.core.encoding import FORMAT_VERSION, decode, encode, pending_of, without_delivered
from streams.core.engine import Engine
from streams.core.outcomes import Decided, LateFinding, Output
from streams.core.policy import DEFAULT_POLICY, Policy, policy_from_mapping
from streams.core.store import MemoryStore
from streams.offline.generator import generate
from tests.helpers import DATA, cart, consent, decisions_list, feed, msg, purchase, rec_msg, session


def _decided(outputs: list[Output]) -> list[tuple[str, str, str | None]]:
    return [
        (o.candidate.message_id, o.decision.action, o.decision.rule)
        for o in outputs
        if isinstance(o, Decided)
    ]


def live_run(
    records: list[dict[str, Any]], seed: int, policy: Policy = DEFAULT_POLICY
) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    """Simulate the worker: per-topic streams read in a random interleaving, live frontiers."""
    rng = random.Random(seed)
    streams: dict[str, list[dict[str, Any]]] = {t: [] for t in INPUT_TOPICS}
    for r in records:
        streams[r["topic"]].append(r)
    engine = Engine(policy, MemoryStore())
    clock = engine.clock(0)
    out: list[Output] = []
    pos = dict.fromkeys(INPUT_TOPICS, 0)
    for t in INPUT_TOPICS:
        clock.set_idle(t, not streams[t])
    while any(pos[t] < len(streams[t]) for t in INPUT_TOPICS):
        topic = rng.choice([t for t in INPUT_TOPICS if pos[t] < len(streams[t])])
        burst = rng.randint(1, 50)  # consumers read batches from one partition at a time
        for _ in range(burst):
            if pos[topic] >= len(streams[topic]):
                break
            out += feed(engine, streams[topic][pos[topic]])
            pos[topic] += 1
            clock.set_idle(topic, pos[topic] >= len(streams[topic]))
            out += engine.release(0, 0)
    out += engine.release(0, 0)
    out += engine.flush(0)  # the wall-clock release at the very end
    return sorted(
        (
            o.candidate.message_id + f"#{o.candidate.seq}",
            o.decision.action,
            o.decision.rule,
            o.decision.removed_skus,
        )
        for o in out
        if isinstance(o, Decided)
    )


def test_live_interleavings_equal_offline(tmp_path: Path) -> None:
    records = generate(150, seed=11)
    offline = decisions_list(tmp_path, records)
    want = sorted(
        (d["message_id"], d["action"], d["rule"], tuple(d["removed_skus"])) for d in offline
    )
    rules_seen = {d["rule"] for d in offline}
    assert len(rules_seen) >= 10, rules_seen  # the history really exercises the rules
    for seed in range(4):
        got = [(m.split("#")[0], a, r, rm) for m, a, r, rm in live_run(records, seed)]
        assert sorted(got) == want, f"interleaving seed {seed} diverged"


def test_candidate_held_until_every_topic_passes_deadline() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    clock = engine.clock(0)
    feed(engine, cart("m", "10:00", "09:59"))
    # Only outbound has been read: other topics may still hold a purchase before 10:05.
    assert engine.release(0, 0) == []
    for t in ("returns", "sessions", "consents", "identities"):
        clock.set_idle(t, True)
    feed(engine, purchase("10:04"))
    assert engine.release(0, 0) == []  # purchases at 10:04, outbound at 10:00: not past 10:05
    feed(engine, session("10:06"))
    feed(engine, msg("later", "promotion", "10:06"))
    assert engine.release(0, 0) == []  # purchases frontier 10:04 still holds it
    feed(engine, purchase("10:05:01", cid="c-other"))
    assert _decided(engine.release(0, 0)) == [("m", "suppress", "cart_already_purchased")]


def test_ties_at_the_deadline_wait_for_the_frontier_to_pass() -> None:
    """A purchase at exactly D may still be unread while another topic sits at D."""
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in ("returns", "sessions", "consents", "identities"):
        engine.clock(0).set_idle(t, True)
    feed(engine, cart("m", "10:00", "09:59"))
    feed(engine, purchase("10:05", cid="c-other"))
    feed(engine, msg("x", "promotion", "10:05", cid="c-other"))
    # Both frontiers sit at 10:05: another 10:05 record may follow, so D=10:05 must wait.
    assert _decided(engine.release(0, 0)) == []
    feed(engine, purchase("10:05"))  # same instant, later record: it still counts
    feed(engine, purchase("10:06", cid="c-other"))
    feed(engine, msg("y", "promotion", "10:06", cid="c-other"))
    assert _decided(engine.release(0, 0)) == [
        ("m", "suppress", "cart_already_purchased"),
        ("x", "send", None),
    ]


def test_all_idle_releases_at_stream_time_and_wall_clock_after() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    clock = engine.clock(0)
    feed(engine, cart("m", "10:00", "09:59"), wall=1_000)
    feed(engine, msg("p", "promotion", "10:00"), wall=1_000)
    for t in INPUT_TOPICS:
        clock.set_idle(t, True)
    # Stream time is 10:00: the promotion (D=10:00) goes, the cart (D=10:05) waits.
    assert _decided(engine.release_idle(0, 1_000)) == [("p", "send", None)]
    assert engine.release_idle(0, 1_000 + 299_999) == []
    assert _decided(engine.release_idle(0, 1_000 + 300_000)) == [("m", "send", None)]


def test_deadline_order_across_settle_delays() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for rec in [cart("c1", "10:00", "09:59"), msg("p1", "promotion", "10:03"), session("11:00")]:
        feed(engine, rec)
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    assert [m for m, _a, _r in _decided(engine.release(0, 0))] == ["p1", "c1"]


def test_late_event_reported_and_decision_kept() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    clock = engine.clock(0)
    for t in INPUT_TOPICS:
        clock.set_idle(t, True)
    feed(engine, cart("m", "10:00", "09:59"))
    feed(engine, session("10:30"))
    assert _decided(engine.release(0, 0)) == [("m", "send", None)]
    late = feed(engine, {**purchase("10:03"), "timestamp": "2026-11-20T10:40:00Z"})
    assert len(late) == 1 and isinstance(late[0], LateFinding)
    f = late[0]
    assert (f.sent.message_id, f.rule, f.event[0]) == ("m", "cart_already_purchased", "purchases")
    assert f.late_by_ms == 35 * 60_000  # record time 10:40, deadline 10:05
    # An event after the deadline contradicts nothing.
    assert feed(engine, purchase("10:06")) == []


def test_message_read_past_the_state_floor_is_decided_without_older_events_and_reported() -> None:
    """A cart mail read when its own stream is 40 days ahead may only look at events above
    what pruning may have removed by then, so it goes out although its customer's
    purchase is still in state; that purchase (read in time) is its late evidence."""
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    clock = engine.clock(0)
    for t in ("returns", "sessions", "consents", "identities"):
        clock.set_idle(t, True)
    feed(engine, purchase("10:03"))
    feed(engine, msg("far", "promotion", "2026-12-30T10:00:00Z", cid="c-99"))
    feed(engine, cart("m", "10:00", "09:59"))
    feed(engine, purchase("12:00", cid="c-99"))
    out = engine.release(0, 0)
    assert _decided(out) == [("m", "send", None)]
    late = [o for o in out if isinstance(o, LateFinding)]
    assert len(late) == 1
    f = late[0]
    assert (f.sent.message_id, f.rule, f.event[0]) == ("m", "cart_already_purchased", "purchases")
    assert "the message was read 39d 23h after its deadline" in f.reason, f.reason
    # Read in time, the same mail is suppressed.
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in ("returns", "sessions", "consents", "identities"):
        engine.clock(0).set_idle(t, True)
    feed(engine, purchase("10:03"))
    feed(engine, cart("m", "10:00", "09:59"))
    feed(engine, msg("far", "promotion", "2026-12-30T10:00:00Z", cid="c-99"))
    feed(engine, purchase("12:00", cid="c-99"))
    assert _decided(engine.release(0, 0)) == [("m", "suppress", "cart_already_purchased")]


def test_late_consent_withdrawal_reported() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed(engine, msg("m", "promotion", "10:00"))
    assert _decided(engine.release(0, 0)) == [("m", "send", None)]
    late = feed(engine, consent("09:00", "withdrawn"))
    assert [f.rule for f in late if isinstance(f, LateFinding)] == ["consent_withdrawn"]


def test_held_candidates_survive_encoding_and_restore() -> None:
    """What the changelog holds is enough to rebuild the heap after a crash."""
    store = MemoryStore()
    engine = Engine(DEFAULT_POLICY, store)
    feed(engine, cart("m", "10:00", "09:59"))
    feed(engine, msg("p", "promotion", "10:01", cid="c-7"))
    # Crash: only the encoded state survives (as in the changelog).
    survived = MemoryStore()
    for cid, st in store.data.items():
        survived.put(cid, decode(encode(st)))
    fresh = Engine(DEFAULT_POLICY, survived)
    assert fresh.restore(lambda _cid: 0) == (2, [])
    feed(fresh, purchase("10:02"))
    feed(fresh, session("11:00"))
    for t in INPUT_TOPICS:
        fresh.clock(0).set_idle(t, True)
    got = _decided(fresh.release(0, 0))
    assert got == [("p", "send", None), ("m", "suppress", "cart_already_purchased")]
    # read order continues after the restored ones (per customer)
    feed(fresh, msg("p2", "promotion", "11:30", cid="c-7"))
    st = survived.get("c-7")
    assert st is not None and [c.seq for c in st.held] == [2]


def test_rewrite_keeps_remaining_skus_in_state_for_duplicate_content() -> None:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed(engine, purchase("2026-11-15T10:00:00Z", ["A"]))
    feed(engine, rec_msg("m1", "10:00", ["A", "B"]))
    feed(engine, rec_msg("m2", "10:30", ["B"]))
    got = _decided(engine.release(0, 0))
    assert got == [
        ("m1", "rewrite", "recommends_recent_purchase"),
        ("m2", "suppress", "duplicate_content"),
    ]


def _state_size(engine: Engine, cid: str = "c-42") -> int:
    st = engine.store.get(cid)
    assert st is not None
    return len(st.purchases) + len(st.sessions) + len(st.sent) + len(st.decided)


def test_state_is_pruned_to_the_longest_window() -> None:
    policy = DEFAULT_POLICY
    engine = Engine(policy, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    # 120 days of daily activity; only ~35 days may stay.
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 6, 1, tzinfo=UTC)
    for day in range(120):
        ts = (start + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
        feed(engine, purchase(ts))
        feed(engine, session(ts))
        feed(engine, msg(f"m{day}", "promotion", ts, payload={"d": day}))
        engine.release(0, 0)
    st = engine.store.get("c-42")
    assert st is not None
    assert 30 <= len(st.purchases) <= 37
    assert len(st.sessions) <= 37 and st.epochs[-1].pruned_sessions >= 80
    assert len(st.sent) <= 3
    assert st.epochs[-1].first_purchase is not None  # all-time facts survive pruning
    assert len(st.orders) == 120  # every order of the last 180 days, for review requests
    assert len(encode(st)) < 16_000


def test_caps_bound_a_hot_customer() -> None:
    policy = policy_from_mapping({"state": {"max_events": 20}})
    engine = Engine(policy, MemoryStore())
    for i in range(200):
        feed(engine, purchase(f"10:{i // 60:02d}:{i % 60:02d}"))
    st = engine.store.get("c-42")
    assert st is not None and len(st.purchases) <= 20


def test_inactive_customers_expire_but_withdrawn_consent_is_kept() -> None:
    policy = policy_from_mapping({"state": {"customer_ttl": "200d", "order_retention": "100d"}})
    engine = Engine(policy, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed(engine, purchase("2026-01-01T10:00:00Z", cid="c-old"))
    feed(engine, consent("2026-01-01T10:00:00Z", "withdrawn", cid="c-quiet"))
    feed(engine, session("2026-11-20T10:00:00Z", cid="c-new"))
    assert engine.sweep(lambda _c: 0) == 2
    assert engine.store.get("c-old") is None
    quiet = engine.store.get("c-quiet")
    assert quiet is not None and [c.withdrawn for c in quiet.consents] == [True]
    assert engine.store.get("c-new") is not None
    feed(engine, msg("m", "promotion", "2026-11-20T11:00:00Z", cid="c-quiet"))
    feed(engine, session("2026-11-20T12:00:00Z"))
    assert _decided(engine.release(0, 0)) == [("m", "suppress", "consent_withdrawn")]


def test_monitor_mode_sends_but_names_the_rule() -> None:
    policy = policy_from_mapping({"rules": {"consent_withdrawn": {"mode": "monitor"}}})
    engine = Engine(policy, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed(engine, consent("09:00", "withdrawn"))
    feed(engine, msg("m", "promotion", "10:00"))
    out = [o for o in engine.release(0, 0) if isinstance(o, Decided)]
    assert out[0].decision.action == "send" and out[0].decision.monitored == ("consent_withdrawn",)


@pytest.mark.parametrize(
    "rule_id", ["cart_already_purchased", "welcome_back_to_new_customer", "frequency_cap"]
)
def test_disabled_rule_does_not_fire(tmp_path: Path, rule_id: str) -> None:
    policy = policy_from_mapping({"rules": {rule_id: {"enabled": False}}})
    recs = {
        "cart_already_purchased": [cart("m", "10:00", "09:59"), purchase("10:02")],
        "welcome_back_to_new_customer": [msg("m", "welcome_back", "10:00")],
        "frequency_cap": [msg(f"a{i}", "promotion", "09:00", payload={"n": i}) for i in range(3)]
        + [msg("m", "promotion", "10:00")],
    }[rule_id]
    got = {d["message_id"]: d for d in decisions_list(tmp_path, recs, policy)}
    assert got["m"]["action"] == "send"


def test_recommendation_action_suppress_drops_whole_message(tmp_path: Path) -> None:
    policy = policy_from_mapping({"rules": {"recommends_recent_purchase": {"action": "suppress"}}})
    got = decisions_list(
        tmp_path,
        [purchase("2026-11-15T10:00:00Z", ["A"]), rec_msg("m", "10:00", ["A", "B"])],
        policy,
    )
    assert (got[0]["action"], got[0]["rule"]) == ("suppress", "recommends_recent_purchase")


def test_settle_delay_from_policy(tmp_path: Path) -> None:
    policy = policy_from_mapping({"settle": {"abandoned_cart": "30m"}})
    recs = [cart("m", "10:00", "09:59"), purchase("10:20")]
    assert decisions_list(tmp_path, recs, policy)[0]["rule"] == "cart_already_purchased"
    assert decisions_list(tmp_path, recs)[0]["action"] == "send"


def test_restore_forgets_stream_clocks() -> None:
    """After a rebalance nothing is released on the strength of what was read before it."""
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    feed(engine, msg("m", "promotion", "10:00"))
    assert engine.restore(lambda _c: 0) == (1, [])
    assert engine.release(0, 0) == []  # no topic known to be caught up or past 10:00 yet
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    feed(engine, session("10:30"))
    assert _decided(engine.release(0, 0)) == [("m", "send", None)]


def test_state_of_the_previous_format_is_still_read() -> None:
    """A rolling upgrade restores changelogs written by the previous version."""
    v2 = orjson.dumps(
        [2, [], [], [], [], [],
         [["m-1", 1, 2, 1, "promotion", "email", "marketing", "k", None, None, None, "send",
           None]],
         [], [["m-1", 1, 2]], [], [[1, 1, None, 0]], 1, {}, []]
    )  # fmt: skip
    st = decode(v2)
    assert st.decided["m-1"][:2] == (1, 2) and st.sent[0].message_id == "m-1"
    assert decode(encode(st)).decided == st.decided


def test_states_written_in_format_3_read_the_same_after_a_rewrite_in_the_current_one() -> None:
    """Changelogs of the previous release (absolute times, strings) are read, and a state
    rewritten in the compact format decodes to exactly the same facts."""
    lines = (DATA / "state_v3.jsonl").read_bytes().splitlines()
    assert len(lines) >= 5
    for line in lines:
        assert orjson.loads(line)[0] == 3
        old = decode(line)
        assert old.sent and old.decided  # the rich parts are exercised
        new = encode(old)
        assert orjson.loads(new.split(b"\n")[0])[0] == FORMAT_VERSION
        assert decode(new) == old
        assert len(new) < 0.7 * len(line)


def test_states_written_in_format_4_with_their_outbox_inside_read_the_same() -> None:
    """Format 4 kept the outbox inside the array; format 5 writes it after."""
    lines = (DATA / "state_v4.jsonl").read_bytes().splitlines()
    assert len(lines) >= 4
    for line in lines:
        assert orjson.loads(line)[0] == 4
        old = decode(line)
        assert old.outbox and old.sent and old.decided
        new = encode(old)
        assert b"\n" in new and orjson.loads(new.split(b"\n")[0])[13] == []
        assert decode(new) == old
        assert pending_of(new) == pending_of(line)


@pytest.mark.parametrize(
    ("scenario", "delivered", "stripped"),
    [
        ("every_generation_in_the_outbox_delivered", 5, True),
        ("the_newest_generation_not_yet_delivered", 4, False),
    ],
)
def test_a_delivered_outbox_is_dropped_from_the_bytes_without_decoding(
    scenario: str, delivered: int, stripped: bool
) -> None:
    line = (DATA / "state_v4.jsonl").read_bytes().splitlines()[0]
    st = decode(line)
    st.outbox = [(3, *st.outbox[0][1:]), (5, *st.outbox[-1][1:])]
    data = encode(st)
    got = without_delivered(data, delivered)
    if not stripped:
        assert got is None
        return
    assert got is not None and b"\n" not in got
    st.outbox = []
    assert decode(got) == st
    assert without_delivered(got, delivered) is None  # nothing left to drop


def test_every_state_of_a_generated_history_round_trips_in_the_compact_format(
    tmp_path: Path,
) -> None:
    """Held candidates, outboxes, consents, orders, suppressions: decode(encode(s)) == s,
    at every step of a replay, not only at its end."""
    from streams.contract.history import HistoryRecord, read_history, write_history

    path = tmp_path / "h.jsonl"
    write_history(path, generate(150, seed=11))
    store = MemoryStore()
    from streams.core.outbox import Outbox

    outbox = Outbox(lambda o: (("send_queue", b"k", b'{"v":1}'),))
    engine = Engine(DEFAULT_POLICY, store, 2, outbox=outbox)
    for p in (0, 1):
        engine.clock(p).set_idle("identities", True)  # no links in this history
    seen_held = seen_outbox = 0
    for i, rec in enumerate(read_history(path)):
        assert isinstance(rec, HistoryRecord)
        ms = rec.record_ms if rec.record_ms is not None else (rec.event_ms or 0)
        parsed = codec.decode(rec.topic, rec.value, ms, ms, DEFAULT_POLICY)
        if not isinstance(parsed, codec.Parsed):
            continue
        p = i % 2
        engine.ingest(p, parsed.kind, parsed.customer_id, parsed.event_ms, parsed.fact, ms)
        engine.release(p, ms)
        st = store.get(parsed.customer_id)
        assert st is not None
        data = encode(st)
        assert decode(data) == st, parsed.customer_id
        seen_held += bool(st.held)
        seen_outbox += bool(st.outbox)
    assert seen_held and seen_outbox
