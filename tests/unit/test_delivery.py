"""Delivery without a broker: the outbox, per-record transactions, a poisoned candidate."""

from __future__ import annotations

from typing import Any

import pytest

from streams.contract import render
from streams.core import rules
from streams.core.engine import Engine
from streams.core.outbox import Outbox
from streams.core.outcomes import Decided, Failed, Output
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.processing.processor import Processor
from tests.helpers import msg, session
from tests.unit.test_engine import _feed


def _outbox() -> Outbox:
    return Outbox(lambda o: render.records(o, "outbound"))


def _engine_with_outbox() -> tuple[Engine, Processor]:
    engine = Engine(DEFAULT_POLICY, MemoryStore(), outbox=_outbox())
    router = Processor(engine, {k: k for k in INPUT_KINDS}, lambda _t: 1)
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, True)
    return engine, router


def test_decision_is_kept_in_the_outbox_until_a_later_publish_is_delivered() -> None:
    engine, router = _engine_with_outbox()
    _feed(engine, msg("m-1", "promotion", "10:00"))
    (out,) = engine.release(0, 0)
    assert isinstance(out, Decided) and out.rendered[0][0] == "send_queue"
    state = engine.store.get("c-42")
    assert state is not None and [(g, r) for g, r, _k, _v in state.outbox] == [(0, "send_queue")]
    # what is rendered once is what gets published, and re-published after a crash
    assert router.render([out])[0].value == out.rendered[0][2]
    assert engine.restore(lambda _c: 0, lambda _p: -1)[1] == [
        ("send_queue", b"c-42", out.rendered[0][2])
    ]
    assert engine.restore(lambda _c: 0, lambda _p: 0)[1] == []  # generation 0 delivered
    assert engine.outbox is not None
    assert engine.outbox.generation == 1  # new entries are newer than any restored one
    engine.outbox.delivered_up_to(0)
    _feed(engine, session("11:00"))  # the next touch drops delivered entries
    state = engine.store.get("c-42")
    assert state is not None and state.outbox == []


def test_a_candidate_whose_decision_raises_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(state: Any, m: Any, skus: Any, policy: Any, view: Any) -> None:
        if m.message_id == "m-poison":
            raise ZeroDivisionError("a bug in a rule")

    monkeypatch.setitem(rules.FUNCTIONS, "frequency_cap", broken)
    engine, router = _engine_with_outbox()
    _feed(engine, msg("m-poison", "promotion", "10:00", cid="c-1"))
    _feed(engine, msg("m-fine", "promotion", "10:01", cid="c-2"))
    outs: list[Output] = engine.release(0, 0)
    assert [type(o).__name__ for o in outs] == ["Failed", "Decided"]
    failed = outs[0]
    assert isinstance(failed, Failed) and "ZeroDivisionError: a bug in a rule" in failed.error
    (rec,) = router.render([failed])
    assert rec.role == "dead_letter" and b"m-poison" in (rec.value or b"")
    state = engine.store.get("c-1")
    assert state is not None and state.held == []  # it cannot block the partition again
    assert engine.held_count(0) == 0


def test_rollback_puts_popped_candidates_back() -> None:
    engine, _router = _engine_with_outbox()
    _feed(engine, msg("m-1", "promotion", "10:00"))
    engine.begin()
    assert len(engine.release(0, 0)) == 1 and engine.held_count(0) == 0
    engine.rollback()  # the store's transaction undoes the state; the heap follows
    assert engine.held_count(0) == 1


def test_table_store_writes_only_committed_work() -> None:
    import asyncio
    from types import SimpleNamespace

    from streams.core.state import CustomerState
    from streams.worker.checkpoint import Checkpoints
    from streams.worker.table_store import TableStore

    async def scenario() -> None:
        table = SimpleNamespace(data={})
        store = TableStore(table.data, lambda _c: True, Checkpoints())
        store.begin()
        store.put("c-1", CustomerState(nseq=1))
        assert (
            store.get("c-1") is not None and table.data == {}
        )  # the work sees it, not yet the table
        store.rollback()
        assert store.get("c-1") is None and table.data == {} and store.dirty == 0
        store.begin()
        store.put("c-1", CustomerState(nseq=2))
        store.commit()
        got = store.get("c-1")
        assert got is not None and got.nseq == 2 and list(table.data) == [b"c-1"]
        store.begin()
        store.delete("c-1")
        store.commit()
        assert table.data == {}
        # written back once: the last value per customer (here: deleted)
        assert store.take_dirty() == {b"c-1": None} and store.dirty == 0

    asyncio.run(scenario())


def test_an_offset_waits_for_the_write_back_of_its_state() -> None:
    import asyncio

    from streams.core.state import CustomerState
    from streams.worker.checkpoint import Checkpoints
    from streams.worker.table_store import TableStore

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        store = TableStore({}, lambda _c: True, cp)
        store.begin()
        store.put("c-1", CustomerState(nseq=1))
        store.commit()
        cp.close(("outbound", 0), 1)
        assert cp.committable() == {}  # its state is only in memory
        dirty, epoch = store.take_dirty(), cp.flush_begins()
        cp.close(("outbound", 0), 2)  # read after the flush began: waits for that one only
        write = loop.create_future()
        Checkpoints.flushed(epoch, [write])
        await asyncio.sleep(0)
        assert dirty and cp.committable() == {}
        write.set_result(None)
        await asyncio.sleep(0)
        assert cp.committable() == {("outbound", 0): (2, "")}

    asyncio.run(scenario())


def test_a_rejected_write_back_fails_every_record_waiting_for_it() -> None:
    import asyncio

    from streams.core.state import CustomerState
    from streams.worker.checkpoint import Checkpoints, WriteFailed
    from streams.worker.table_store import TableStore

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        store = TableStore({}, lambda _c: True, cp)
        store.put("c-1", CustomerState(nseq=1))  # a timer's write, outside a record
        cp.close(("sessions", 3), 8)
        store.take_dirty()
        epoch = cp.flush_begins()
        write = loop.create_future()
        Checkpoints.flushed(epoch, [write])
        write.set_exception(OSError("RecordTooLarge"))
        await asyncio.sleep(0)
        with pytest.raises(WriteFailed, match=r"write-back.*RecordTooLarge.*sessions\[3\]@7"):
            cp.committable()

    asyncio.run(scenario())


def _send(mid: str, decided_at: str = "2026-11-20T10:00:00Z") -> bytes:
    import orjson

    return orjson.dumps(
        {"message_id": mid, "sanity": {"action": "send", "removed_skus": [],
                                       "decided_at": decided_at}}
    )  # fmt: skip


def _sup(mid: str, rule: str = "frequency_cap") -> bytes:
    import orjson

    return orjson.dumps({"message": {"message_id": mid}, "rule": rule})


def _in(mid: str) -> bytes:
    import orjson

    return orjson.dumps({"message_id": mid})


@pytest.mark.parametrize(
    ("scenario", "sent", "suppressed", "expect"),
    [
        ("every_candidate_once", [_send("a")], [_sup("b")], {"missing": 0, "ok": True}),
        ("one_lost", [_send("a")], [], {"missing": 1, "ok": False}),
        ("identical_copy", [_send("a"), _send("a")], [_sup("b")],
         {"duplicated_identical": 1, "ok": True}),
        ("different_copy", [_send("a"), _send("a", "2026-11-20T11:00:00Z")], [_sup("b")],
         {"duplicated_different": 1, "ok": False}),
        ("never_came_in", [_send("a"), _send("z")], [_sup("b")], {"unexpected": 1, "ok": False}),
    ],
)  # fmt: skip
def test_conservation_counts_by_message_id(
    scenario: str, sent: list[bytes], suppressed: list[bytes], expect: dict[str, object]
) -> None:
    from streams.ops.verify import conserve

    got = conserve([_in("a"), _in("b")], sent, suppressed, [], "x.outbound").as_dict()
    assert {k: got[k] for k in expect} == expect, got


def test_conservation_against_the_offline_replay_and_dead_letters() -> None:
    import orjson

    from streams.ops.verify import conserve

    dead = orjson.dumps({"topic": "x.outbound", "partition": 0, "offset": 2,
                         "value": '{"message_id": "c", "trigger": "nope"}',
                         "value_encoding": "utf-8", "error": "trigger: ..."})  # fmt: skip
    r = conserve([_in("a"), _in("b"), _in("c")], [_send("a")], [_sup("b")], [dead],
                 "x.outbound", offline=[("a", "send", None, ()),
                                        ("b", "suppress", "duplicate_content", ())])  # fmt: skip
    assert (r.candidates, r.dead_lettered, r.missing, r.different) == (2, 1, 0, 1)
    assert r.examples["different"] == ["b"]


@pytest.mark.parametrize(
    ("scenario", "limits", "size", "held"),
    [
        ("count_limit", {"max_held": 2}, 100, 2),
        ("bytes_limit", {"max_held_bytes": 70_000}, 30_000, 2),
    ],
)
def test_held_candidates_are_capped_and_the_overflow_dead_lettered(
    scenario: str, limits: dict[str, int], size: int, held: int
) -> None:
    import orjson

    from streams.contract import decode as codec
    from streams.core.candidate import Candidate
    from streams.core.encoding import encode
    from streams.core.policy import policy_from_mapping

    policy = policy_from_mapping({"state": limits, "settle": {"promotion": "1h"}})
    engine = Engine(policy, MemoryStore(), outbox=_outbox())
    router = Processor(engine, {k: k for k in INPUT_KINDS}, lambda _t: 1)
    failed = []
    for i in range(4):
        rec = msg(f"m-{i}", "promotion", f"10:0{i}", payload={"blob": "x" * size})
        raw = orjson.dumps(rec["value"])
        parsed = codec.decode("outbound", raw, 1795168800000 + 3_600_000, 0, policy)
        assert isinstance(parsed, codec.Parsed) and isinstance(parsed.fact, Candidate)
        outs = engine.ingest(0, "outbound", "c-42", parsed.event_ms, parsed.fact, 0,
                             source=("x.outbound:0", i))  # fmt: skip
        failed += [o for o in outs if isinstance(o, Failed)]
    state = engine.store.get("c-42")
    assert state is not None and [c.message_id for c in state.held] == ["m-0", "m-1"][:held]
    assert [f.candidate.message_id for f in failed] == ["m-2", "m-3"]
    dead = orjson.loads(router.render([failed[0]])[0].value or b"")
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("x.outbound", 0, 2)
    assert "was not held" in dead["error"]
    assert len(encode(state)) < 1024 * 1024  # what the broker accepts as one record


def test_hundreds_of_200kb_messages_never_make_a_state_the_broker_refuses() -> None:
    import orjson

    from streams.contract import decode as codec
    from streams.core.candidate import Candidate
    from streams.core.encoding import encode
    from streams.core.policy import policy_from_mapping

    policy = policy_from_mapping({"settle": {"promotion": "1d"}})
    engine = Engine(policy, MemoryStore())
    for i in range(300):
        rec = msg(f"m-{i}", "promotion", "10:00", payload={"blob": "x" * 200_000})
        parsed = codec.decode("outbound", orjson.dumps(rec["value"]), 1795168800000, 0, policy)
        assert isinstance(parsed, codec.Parsed) and isinstance(parsed.fact, Candidate)
        engine.ingest(0, "outbound", "c-42", parsed.event_ms, parsed.fact, 0)
    state = engine.store.get("c-42")
    assert state is not None and 1 <= len(state.held) <= 3
    assert len(encode(state)) < 1024 * 1024
    assert engine.counts["held_full"] == 300 - len(state.held)


@pytest.mark.parametrize(
    ("scenario", "second", "applied"),
    [
        # the same record read again after a crash: skipped
        ("redelivered_after_a_crash", ("x.sessions:0", 7, 1_000), False),
        # the topic got more partitions: the customer's records now come from partition 3,
        # whose offsets have nothing to do with partition 0's
        ("repartitioned_topic", ("x.sessions:3", 2, 2_000), True),
        # the topic was deleted and created again: offsets start over, times move on
        ("recreated_topic", ("x.sessions:0", 0, 5_000), True),
    ],
)
def test_redelivery_is_recognised_per_source_stream(
    scenario: str, second: tuple[str, int, int], applied: bool
) -> None:
    from streams.core.state import SessionFact

    engine = Engine(DEFAULT_POLICY, MemoryStore())
    engine.ingest(0, "sessions", "c-42", 10, SessionFact("s-1", 10), 1_000,
                  source=("x.sessions:0", 7))  # fmt: skip
    stream, offset, record_ms = second
    engine.ingest(0, "sessions", "c-42", 20, SessionFact("s-2", 20), record_ms,
                  source=(stream, offset))  # fmt: skip
    state = engine.store.get("c-42")
    assert state is not None
    assert (len(state.sessions) == 2) is applied
    assert engine.counts["redelivered"] == (0 if applied else 1)


def test_the_web_server_binds_where_the_settings_say() -> None:
    from streams.settings import Settings
    from streams.worker.app import app_config

    assert app_config(Settings())["web_bind"] == "127.0.0.1"
    assert app_config(Settings(web_host="0.0.0.0"))["web_bind"] == "0.0.0.0"


def test_a_flush_starting_mid_record_still_holds_back_its_offset() -> None:
    """The record changed state, then awaited its other writes; a flush began meanwhile.
    Its offset must wait for that flush, though the record closes after it began."""
    import asyncio

    from streams.core.state import CustomerState
    from streams.worker.checkpoint import Checkpoints
    from streams.worker.table_store import TableStore

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        store = TableStore({}, lambda _c: True, cp)
        store.begin()
        store.put("c-1", CustomerState(nseq=1))
        store.commit()
        store.take_dirty()
        epoch = cp.flush_begins()  # the flush starts before the record closes
        cp.close(("outbound", 0), 1)
        write = loop.create_future()
        Checkpoints.flushed(epoch, [write])
        assert cp.committable() == {}
        write.set_result(None)
        await asyncio.sleep(0)
        assert cp.committable() == {("outbound", 0): (1, "")}

    asyncio.run(scenario())


def test_durable_waits_for_a_flush_of_a_timer_change() -> None:
    """A timer released a candidate (state changed, no record yet); publishing its
    decision must wait until that state is acknowledged."""
    import asyncio

    from streams.core.state import CustomerState
    from streams.worker.checkpoint import Checkpoints
    from streams.worker.table_store import TableStore

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        store = TableStore({}, lambda _c: True, cp)
        store.put("c-1", CustomerState(nseq=1))  # outside any record
        store.take_dirty()
        epoch = cp.flush_begins()
        write = loop.create_future()
        Checkpoints.flushed(epoch, [write])
        waiter = asyncio.ensure_future(cp.durable())
        await asyncio.sleep(0)
        assert not waiter.done()
        write.set_result(None)
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def _table_store(data: dict[bytes, bytes] | None = None) -> Any:

    from streams.worker.checkpoint import Checkpoints
    from streams.worker.table_store import TableStore

    return TableStore({} if data is None else data, lambda _c: True,
                      Checkpoints(), cache_size=2)  # fmt: skip


def test_the_state_cache_holds_only_what_the_table_bytes_say() -> None:
    import asyncio

    from streams.core.encoding import decode
    from streams.core.state import CustomerState

    async def scenario() -> None:
        store = _table_store()
        store.begin()
        store.put("c-1", CustomerState(nseq=1))
        store.commit()
        store.begin()
        cached = store.get("c-1")
        assert cached is not None and cached.nseq == 1
        cached.nseq = 99  # changed in place by a record that then fails
        store.rollback()
        store.begin()
        again = store.get("c-1")
        assert again is not None and again.nseq == 1, "a failed record's change must not stick"
        again.nseq = 7  # changed in place, read-only record: never written back
        store.commit()
        store.begin()
        third = store.get("c-1")
        assert third is not None and third.nseq == 1
        third.nseq = 3
        store.put("c-1", third)
        store.commit()
        assert decode(store.data[b"c-1"]).nseq == 3
        store.begin()
        fourth = store.get("c-1")
        assert fourth is third, "a committed state is served from the cache"
        store.commit()
        for i in range(2, 6):  # more customers than the cache holds
            store.begin()
            store.put(f"c-{i}", CustomerState(nseq=i))
            store.commit()
        assert len(store._cache) == 2 and b"c-1" not in store._cache
        store.begin()
        back = store.get("c-1")
        assert back is not None and back.nseq == 3 and back is not third

    asyncio.run(scenario())


def test_restore_reads_held_candidates_and_outboxes_without_decoding_whole_states() -> None:
    import asyncio

    from streams.core.encoding import encode, pending_of

    engine, _router = _engine_with_outbox()
    _feed(engine, msg("m-1", "promotion", "10:00", cid="c-1"))
    _feed(engine, msg("m-2", "promotion", "10:05", cid="c-2"))
    engine.begin()
    assert len(engine.release(0, 0)) == 2  # decided: kept in the outboxes
    engine.commit()
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, False)
    _feed(engine, msg("m-3", "promotion", "10:10", cid="c-2"))  # held: streams are busy
    assert isinstance(engine.store, MemoryStore)
    states = dict(engine.store.data)
    data = {cid.encode(): encode(st) for cid, st in states.items()}
    for cid, st in states.items():
        held, outbox = pending_of(data[cid.encode()])
        assert held == [(c.deadline, c.message_id, c.seq) for c in st.held]
        assert [tuple(e) for e in outbox] == [tuple(e) for e in st.outbox]

    async def scenario() -> tuple[int, list[Any]]:
        table_engine = Engine(DEFAULT_POLICY, _table_store(data))
        steps = table_engine.restoring(lambda _c: 0, lambda _p: -1)
        for _ in steps.walk:
            pass
        return steps.held, sorted(steps.again)

    expected = Engine(DEFAULT_POLICY, engine.store).restore(lambda _c: 0, lambda _p: -1)
    got = asyncio.run(scenario())
    assert got == (expected[0], sorted(expected[1])) and got[0] >= 1 and got[1]


def test_a_sweep_in_steps_ends_where_a_sweep_at_once_ends() -> None:
    from dataclasses import replace

    from streams.core.encoding import encode

    def run(stepwise: bool) -> dict[str, bytes]:
        engine, _router = _engine_with_outbox()
        for i in range(6):
            _feed(engine, session(f"2024-01-0{i + 1}T10:00:00Z", cid=f"c-{i}"))
        _feed(engine, session("2026-03-01T10:00:00Z", cid="c-late"))  # 400 d TTL passed
        if stepwise:
            steps = engine.sweeping(list(engine.store.keys()), lambda _c: 0)
            n = sum(next(steps) for _ in range(3))  # a few customers, then the rest later
            n += sum(steps)
        else:
            n = engine.sweep(lambda _c: 0)
        assert n >= 1 and engine.counts["sweeps"] == 1
        assert isinstance(engine.store, MemoryStore)
        return {
            cid: encode(replace(st, sessions=[replace(x, event_id="") for x in st.sessions]))
            for cid, st in engine.store.data.items()
        }  # event ids come from a counter: equal states but for them

    assert run(stepwise=True) == run(stepwise=False)
