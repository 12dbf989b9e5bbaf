"""The worker's per-record logic, without a broker: bytes in, output records out."""

from __future__ import annotations

import orjson

from streams.contract.partitioning import partition_for
from streams.core.clock import NEVER
from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.processing.processor import Processor
from streams.processing.records import OutRecord
from tests.helpers import cart, msg, purchase, rec_msg, session

N = 4
RIGHT = partition_for("c-42", N)
ROLE_OF = {f"x.{k}": k for k in INPUT_KINDS}


def router() -> Processor:
    return Processor(Engine(DEFAULT_POLICY, MemoryStore()), ROLE_OF, lambda _t: N)


def feed(
    r: Processor,
    rec: dict,
    offset: int = 0,
    key: bytes | None = b"c-42",
    partition: int = RIGHT,
    record_ms: int | None = None,
) -> list[OutRecord]:
    value = orjson.dumps(rec["value"])
    t = record_ms if record_ms is not None else 1795168800000
    return r.on_record(f"x.{rec['topic']}", partition, offset, t, key, value, 42)


def idle_all(r: Processor) -> None:
    for k in INPUT_KINDS:
        r.engine.clock(RIGHT).set_idle(k, True)


def test_unreadable_record_becomes_a_dead_letter_with_its_coordinates() -> None:
    r = router()
    out = r.on_record("x.purchases", 3, 1234, 0, b"c-42", b"{nope", 42)
    assert [o.role for o in out] == ["dead_letter"]
    dl = orjson.loads(out[0].value or b"")
    assert (dl["topic"], dl["partition"], dl["offset"], dl["key"], dl["value"]) == (
        "x.purchases",
        3,
        1234,
        "c-42",
        "{nope",
    )
    assert dl["error"].startswith("not valid JSON at byte 1") and out[0].key == b"c-42"
    assert r.counts["dead_letter"] == 1


def rerouting_router() -> Processor:
    engine = Engine(DEFAULT_POLICY, MemoryStore(), partitions=N, rerouted=True)
    return Processor(engine, ROLE_OF, lambda _t: N, reroute_topic="x-reroute")


T_09_00 = 1795165200000  # 2026-11-20T09:00:00Z


def test_wrong_partition_is_forwarded_through_the_reroute_topic_not_decided() -> None:
    r = rerouting_router()
    wrong = (RIGHT + 1) % N
    rec = session("09:00")
    out = feed(r, rec, offset=7, partition=wrong, record_ms=T_09_00)
    assert out == [
        OutRecord(
            "reroute",
            b"c-42",
            orjson.dumps(rec["value"]),
            RIGHT,
            T_09_00,
            (
                ("ts-role", b"sessions"),
                ("ts-src", f"x.sessions:{wrong}:7".encode()),
                ("ts-arr", str(NEVER).encode()),
                ("ts-inc", b""),
            ),
            origin=wrong,  # with exactly-once: in the transaction of the partition read
        )
    ]
    assert r.engine.store.get("c-42") is None  # nothing applied to state
    assert r.counts["rerouted"] == 1 and r.misrouted == {"x.sessions": 1}
    # the source stream still moved on: its frontier is the forwarded record's time
    assert r.engine.clock(wrong).frontier("sessions") == T_09_00


def test_wrong_or_missing_key_on_the_right_partition_is_decided_in_place() -> None:
    r = rerouting_router()
    for i, key in enumerate((b"someone-else", None)):
        assert feed(r, msg(f"m{i}", "promotion", "10:00"), offset=i, key=key) == []
    assert r.engine.held_count(RIGHT) == 2 and r.counts["rekeyed"] == 2


def _forwarded(r: Processor, rec: dict, src: str, arr: int = NEVER) -> list[OutRecord]:
    headers = {"ts-role": rec["topic"].encode(), "ts-src": src.encode(),
               "ts-arr": str(arr).encode()}  # fmt: skip
    return r.on_record(
        "x-reroute", RIGHT, 0, 1795168800000, b"c-42", orjson.dumps(rec["value"]), 42, headers
    )


def test_forwarded_record_is_applied_once_even_if_forwarded_twice() -> None:
    r = rerouting_router()
    rec = msg("m-1", "promotion", "10:00")
    _forwarded(r, rec, "x.outbound:3:17")
    _forwarded(r, rec, "x.outbound:3:17")  # the forwarding worker crashed before committing
    assert r.engine.held_count(RIGHT) == 1 and r.engine.counts["redelivered"] == 1
    # A real duplicate from automation (another source offset) is still a duplicate.
    _forwarded(r, rec, "x.outbound:3:18")
    assert r.engine.held_count(RIGHT) == 2


def test_partition_waits_for_progress_markers_of_every_other_partition() -> None:
    r = rerouting_router()
    for k in INPUT_KINDS:
        r.engine.clock(RIGHT).set_idle(k, True)
    assert feed(r, msg("m-1", "promotion", "10:00")) == []
    assert r.render(r.release(RIGHT, 0)) == []  # other partitions may still forward an older event
    later = 1795172400000  # 11:00
    for src in range(N):
        if src == RIGHT:
            continue
        clock = r.engine.clock(src)
        for k in INPUT_KINDS:
            clock.observe(k, later)
        markers = r.markers(src, N, src)
        assert sorted(m.partition for m in markers) == [p for p in range(N) if p != src]
        marker = next(m for m in markers if m.partition == RIGHT)
        assert r.on_record("x-reroute", RIGHT, 0, later, None, marker.value, 42,
                           dict(marker.headers)) == []  # fmt: skip
        if src != max(p for p in range(N) if p != RIGHT):
            assert r.render(r.release(RIGHT, 0)) == []
    assert [o.role for o in r.render(r.release(RIGHT, 0))] == ["send_queue"]


def test_suppression_record_is_the_contracts() -> None:
    r = router()
    idle_all(r)
    raw_cart = cart("m-1", "10:00", "09:59")
    assert feed(r, raw_cart, record_ms=1795168800000) == []
    feed(r, purchase("10:02", eid="p-1", order="o-9"))
    feed(r, session("10:30"))
    out = r.render(r.release(RIGHT, 1795168800000 + 60_000))
    assert [o.role for o in out] == ["suppressed"]
    s = orjson.loads(out[0].value or b"")
    assert s == {
        "message": raw_cart["value"],
        "rule": "cart_already_purchased",
        "reason": "order o-9 was placed at 2026-11-20 10:02 UTC, after the cart was last updated "
        "at 2026-11-20 09:59 UTC",
        "evidence": [
            {"topic": "purchases", "event_id": "p-1", "occurred_at": "2026-11-20T10:02:00Z"}
        ],
        "decided_at": "2026-11-20T10:01:00Z",
        "policy": "default-1",
    }


def test_rewrite_strips_skus_and_keeps_unknown_fields() -> None:
    r = router()
    idle_all(r)
    feed(r, purchase("2026-11-15T10:00:00Z", ["A"], eid="p-a"))
    m = rec_msg("m-r", "10:00", ["A", "B"])
    m["value"]["campaign"] = {"id": 7}
    feed(r, m)
    feed(r, session("10:30"))
    out = r.render(r.release(RIGHT, 1795168800000))
    assert [o.role for o in out] == ["send_queue"]
    sent = orjson.loads(out[0].value or b"")
    assert sent["context"]["skus"] == ["B"] and sent["campaign"] == {"id": 7}
    assert sent["sanity"]["action"] == "rewrite" and sent["sanity"]["removed_skus"] == ["A"]
    assert sent["sanity"]["rule"] == "recommends_recent_purchase"
    assert sent["sanity"]["evidence"] == [
        {"topic": "purchases", "event_id": "p-a", "occurred_at": "2026-11-15T10:00:00Z"}
    ]


def test_redelivered_candidate_after_a_crash_is_not_a_duplicate() -> None:
    """Same record, same offset, read again after restart: no second decision at all."""
    r = router()
    idle_all(r)
    m = msg("m-1", "promotion", "10:00")
    feed(r, m, offset=7)
    feed(r, m, offset=7)  # held copy survived in the table; the offset was not committed
    feed(r, session("10:30"))
    out = r.render(r.release(RIGHT, 0))
    assert [o.role for o in out] == ["send_queue"]
    feed(r, m, offset=7)  # and once more after it was decided
    assert r.render(r.release(RIGHT, 0)) == []
    assert r.engine.counts["redelivered"] == 2


def test_redelivered_events_after_a_rebalance_are_skipped() -> None:
    """A duplicate pair re-read after its partition moved: neither copy is decided again."""
    r = router()
    idle_all(r)
    first, second = msg("dup", "promotion", "10:00"), msg("dup", "promotion", "10:01")
    feed(r, first, offset=3)
    feed(r, second, offset=4)
    feed(r, session("10:30"), offset=0)
    assert [o.role for o in r.render(r.release(RIGHT, 0))] == ["send_queue", "suppressed"]
    # the new owner restores this state and re-reads from the last committed offset (2)
    for off, rec in ((3, first), (4, second)):
        assert feed(r, rec, offset=off) == []
    assert r.render(r.release(RIGHT, 0)) == []
    assert r.engine.counts["redelivered"] == 2


def test_same_message_at_another_offset_is_a_real_duplicate() -> None:
    r = router()
    idle_all(r)
    m = msg("m-1", "promotion", "10:00")
    feed(r, m, offset=7)
    feed(r, m, offset=8)  # automation fired it twice
    feed(r, session("10:30"))
    out = r.render(r.release(RIGHT, 0))
    assert [o.role for o in out] == ["send_queue", "suppressed"]
    assert orjson.loads(out[1].value or b"")["rule"] == "duplicate_message"


def test_forwarded_records_are_settled_once_read_back_by_this_run() -> None:
    """In-process markers are only as good as the topic's: every record this run forwarded
    from S to P must have been read back at P first."""
    r = rerouting_router()
    r.new_incarnation(b"run-1")
    wrong = (RIGHT + 1) % N
    (fwd,) = feed(r, session("09:00"), offset=3, partition=wrong, record_ms=T_09_00)
    assert dict(fwd.headers)["ts-inc"] == b"run-1"
    assert not r.settled(wrong, RIGHT)
    headers = dict(fwd.headers)
    r.on_record("x-reroute", RIGHT, 0, T_09_00, fwd.key, fwd.value, 42, headers)
    assert r.settled(wrong, RIGHT)
    # a record an earlier run forwarded does not count for this one
    r.new_incarnation(b"run-2")
    feed(r, session("09:01"), offset=4, partition=wrong, record_ms=T_09_00)
    r.on_record("x-reroute", RIGHT, 1, T_09_00, fwd.key, fwd.value, 42, headers)
    assert not r.settled(wrong, RIGHT)
