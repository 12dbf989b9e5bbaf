"""The worker's table store and the checkpoint ledger together, without a broker: only
committed work is written back, offsets wait for the write-back of their state, the
cache holds only what the table bytes say, a restore reads held candidates and outboxes
without decoding whole states."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from tests.helpers import engine_with_outbox, feed, msg


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

    engine, _router = engine_with_outbox()
    feed(engine, msg("m-1", "promotion", "10:00", cid="c-1"))
    feed(engine, msg("m-2", "promotion", "10:05", cid="c-2"))
    engine.begin()
    assert len(engine.release(0, 0)) == 2  # decided: kept in the outboxes
    engine.commit()
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, False)
    feed(engine, msg("m-3", "promotion", "10:10", cid="c-2"))  # held: streams are busy
    assert isinstance(engine.store, MemoryStore)
    states = dict(engine.store.data)
    data = {cid.encode(): encode(st) for cid, st in states.items()}
    for cid, st in states.items():
        held, outbox = pending_of(data[cid.encode()])
        assert held == [(c.deadline, c.message_id, c.seq, 0) for c in st.held]
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


def test_delivered_outboxes_leave_memory_and_undelivered_ones_stay() -> None:
    """After a publish cycle is delivered, the customers written back with its outbox
    entries keep only their state in memory (and in the cache); one written since with
    entries still to publish keeps them until they are delivered too."""
    import asyncio

    from streams.core.encoding import OUTBOX_SEP, decode
    from streams.core.state import CustomerState

    async def scenario() -> None:
        store = _table_store()
        store.begin()
        store.put("c-1", CustomerState(nseq=1, outbox=[(0, "send_queue", "c-1", "{}")]))
        store.put("c-2", CustomerState(nseq=2, outbox=[(0, "suppressed", "c-2", "{}")]))
        store.commit()
        assert OUTBOX_SEP in store.data[b"c-1"]
        store.take_dirty()  # the cycle's write-back
        store.begin()
        later = store.get("c-2")
        assert later is not None
        later.outbox.append((1, "send_queue", "c-2", "{}"))  # the next cycle's decision
        store.put("c-2", later)
        store.commit()
        assert store.drop_delivered_outboxes(0) == 1
        assert OUTBOX_SEP not in store.data[b"c-1"]
        assert decode(store.data[b"c-1"]) == CustomerState(nseq=1)
        assert store._cache[b"c-1"].outbox == []
        assert len(decode(store.data[b"c-2"]).outbox) == 2  # generation 1: not yet
        store.take_dirty()
        assert store.drop_delivered_outboxes(1) == 1
        assert decode(store.data[b"c-2"]).outbox == []
        assert store.drop_delivered_outboxes(1) == 0

    asyncio.run(scenario())
