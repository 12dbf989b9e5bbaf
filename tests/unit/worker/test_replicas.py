"""The campaign gate replicas in the customers table: their rows land in their own
partition (so they move and commit with it), read back into a replica that decides
alike, campaigns the book forgot leave a tombstone, and no walk over customers ever
meets them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.contract.partitioning import partition_for
from streams.core.campaigns import Order
from streams.core.engine import Engine
from streams.core.gate import Count
from streams.core.policy import load_policy
from streams.core.state import CustomerState
from streams.worker.changelog import PartitionedData
from streams.worker.checkpoint import Checkpoints
from streams.worker.replicas import Replicas
from streams.worker.table_store import GATE_PREFIX, TableStore

ROOT = Path(__file__).resolve().parents[3]
N = 4
BLAST = load_policy(ROOT / "policies" / "blast.toml")


def _setup() -> tuple[Engine, TableStore, Replicas, PartitionedData]:
    data = PartitionedData(N)
    store = TableStore(data, lambda _c: True, Checkpoints())
    engine = Engine(BLAST, store, N, replicas=True)
    return engine, store, Replicas(engine, store, N), data


def _counts(campaign: str, n: int, start: int = 0) -> list[Count]:
    return [(1_000_000 + i, f"m-{campaign}-{i}", 1, f"c-{campaign}-{i}", campaign, 1_000_000 + i,
             "") for i in range(start, start + n)]  # fmt: skip


def test_rows_land_in_their_partition_and_read_back_into_the_same_replica() -> None:
    asyncio.run(_rows_read_back())


async def _rows_read_back() -> None:  # the store's checkpoints want an event loop
    engine, store, replicas, data = _setup()
    for p in range(N):
        engine.part(p)
        for src in range(N):
            engine.incoming(p, src, _counts(f"camp{src}", 5), 1_000_000 + 2, 0)
    assert replicas.save(range(N)) > N
    written = [k for k in data if k.startswith(GATE_PREFIX.encode())]
    assert written and all(
        partition_for(k.decode(), N) == int(k[len(GATE_PREFIX) :].split(b"-")[0]) for k in written
    )
    before = {p: g.to_row() for p, g in engine.gates().items()}
    books = {p: {c: g.book.row(c) for c in g.book.campaigns} for p, g in engine.gates().items()}
    fresh = Engine(BLAST, store, N, replicas=True)
    assert Replicas(fresh, store, N).load(range(N)) == sum(len(b) for b in books.values())
    assert {p: g.to_row() for p, g in fresh.gates().items()} == before
    assert {p: {c: g.book.row(c) for c in g.book.campaigns}
            for p, g in fresh.gates().items()} == books  # fmt: skip
    # nothing new: nothing written again
    store.take_dirty()
    assert replicas.save(range(N)) == 0 and store.dirty == 0


def test_a_forgotten_campaign_leaves_a_tombstone_and_customer_walks_never_meet_rows() -> None:
    asyncio.run(_forgotten())


async def _forgotten() -> None:
    engine, store, replicas, data = _setup()
    store.put("c-1", CustomerState())
    for src in range(N):
        engine.incoming(0, src, _counts("old", 3) if src == 1 else [], 1_000_010, 0)
    replicas.save([0])
    key = replicas.campaign_key(0, "old")
    assert key in data
    week = BLAST.blast.volume_history + BLAST.blast.window
    later = 1_000_010 + week + 10_000
    for src in range(N):
        engine.incoming(0, src, _counts("new", 1, start=week + 20_000) if src == 2 else [],
                        later + 30_000, 0)  # fmt: skip
    store.take_dirty()
    replicas.save([0])
    dirty = store.take_dirty()
    assert dirty.get(key, b"kept") is None and key not in data  # a tombstone
    assert list(store.keys()) == ["c-1"]
    assert [cid for cid, _h, _o in store.pending()] == ["c-1"]


def test_a_replica_holding_thousands_goes_out_in_pieces_under_the_record_limit() -> None:
    asyncio.run(_pieces())


async def _pieces() -> None:
    engine, store, replicas, data = _setup()
    engine.part(0)
    # another partition's backlog waits for a slow one: 6,000 entries in the row
    engine.incoming(0, 1, _counts("big", 6_000), 2_000_000, 0)
    replicas.save([0])
    dirty = store.take_dirty()
    assert max(len(v or b"") for v in dirty.values()) <= 256 * 1024
    assert sum(1 for k in dirty if b"|" in k) >= 2
    before = engine.gates()[0].to_row()
    fresh = Engine(BLAST, store, N, replicas=True)
    Replicas(fresh, store, N).load([0])
    assert fresh.gates()[0].to_row() == before
    # the head row names its version's pieces and is written after them
    order = list(dirty)
    assert order[-1] == replicas.head_key(0)
    # once they are let out the row is small again: the pieces go at the write after
    # (until a head row not naming them has landed, they may still be read)
    for src in (0, 2, 3):
        engine.incoming(0, src, [], 3_000_000, 0)
    replicas.save([0])
    assert not [k for k, v in store.take_dirty().items() if b"|" in k and v is None]
    engine.incoming(0, 1, [], 3_000_001, 0)
    replicas.save([0])
    assert [k for k, v in store.take_dirty().items() if b"|" in k and v is None]
    assert not [k for k in data if b"|" in k]


def test_a_campaign_named_like_a_piece_of_the_head_row_is_its_own_row() -> None:
    asyncio.run(_named_like_a_piece())


async def _named_like_a_piece() -> None:
    engine, store, replicas, _data = _setup()
    engine.part(0)
    engine.incoming(0, 1, _counts("big", 6_000), 2_000_000, 0)
    for src in (0, 2, 3):
        engine.incoming(0, src, _counts("|0-0", 2) if src == 2 else [], 1_000_001, 0)
    replicas.save([0])
    before = engine.gates()[0].to_row()
    fresh = Engine(BLAST, store, N, replicas=True)
    assert Replicas(fresh, store, N).load([0]) == 2  # "big" and "|0-0"
    assert fresh.gates()[0].to_row() == before


def test_a_command_refused_because_a_replica_was_past_it_stays_refused_after_a_restart() -> None:
    asyncio.run(_refused())


async def _refused() -> None:
    engine, store, replicas, _data = _setup()
    # partition 1's replica let out an entry after the command's time, partition 0's not
    late_entry: list[Count] = [(3_000_000, "m-x", 1, "c-x", "recs", 3_000_000, "")]
    for p in (0, 1):
        for src in range(N):
            counts = late_entry if (p, src) == (1, 2) else []
            engine.incoming(p, src, counts, 1_000_000 if p == 0 else 5_000_000, 0)
    late = Order("recs", "kill", 2_000_000, 1, "ops", "too late for partition 1")
    assert engine.command(late) == 0  # partition 1 was past it: neither applies it
    replicas.save([0, 1])
    fresh = Engine(BLAST, store, N, replicas=True, orders=[late])
    Replicas(fresh, store, N).load([0, 1])
    for src in range(N):
        fresh.incoming(0, src, [], 9_000_000, 0)
    assert all(not g.book.orders for g in fresh.gates().values())
