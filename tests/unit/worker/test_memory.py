"""The table's memory split by partition, and what a store does when partitions move."""

from __future__ import annotations

import asyncio

import pytest

from streams.contract.partitioning import partition_for
from streams.core.state import CustomerState
from streams.worker.changelog import PartitionedData
from streams.worker.checkpoint import Checkpoints
from streams.worker.table_store import TableStore, delivered_key

N = 8


def _keys(n: int) -> list[bytes]:
    return [f"c-{i}".encode() for i in range(n)]


def test_keys_land_in_their_murmur2_partition_and_read_back() -> None:
    data = PartitionedData(N)
    for k in _keys(200):
        data[k] = b"v" + k
    assert len(data) == 200 and set(data) == set(_keys(200))
    for k in _keys(200):
        p = partition_for(k.decode(), N)
        assert data.part(p)[k] == b"v" + k
        assert data[k] == data.get(k) == b"v" + k and k in data
    assert data.get(b"nobody") is None and b"nobody" not in data
    with pytest.raises(KeyError):
        data[b"nobody"]


@pytest.mark.parametrize(
    ("scenario", "delete"),
    [("a key deleted is gone from its partition", True), ("a key kept stays", False)],
)
def test_delete_and_pop_act_on_the_right_partition(scenario: str, delete: bool) -> None:
    data = PartitionedData(N)
    data[b"c-1"] = b"x"
    if delete:
        del data[b"c-1"]
        assert b"c-1" not in data and data.pop(b"c-1", None) is None, scenario
    else:
        assert data.pop(b"c-1") == b"x" and b"c-1" not in data, scenario


def test_a_partition_is_dropped_in_one_step_and_the_others_stay() -> None:
    data = PartitionedData(N)
    for k in _keys(400):
        data[k] = b"v"
    gone = partition_for("c-0", N)
    in_gone = [k for k in _keys(400) if partition_for(k.decode(), N) == gone]
    assert data.drop(gone) == len(in_gone) > 0
    assert len(data) == 400 - len(in_gone)
    assert all(k not in data for k in in_gone)
    assert data.drop(gone) == 0


def test_delivery_markers_live_in_the_partition_they_mark() -> None:
    data = PartitionedData(N)
    for p in range(N):
        key = delivered_key(p, N).encode()
        data[key] = b"3"
        assert data.part(p)[key] == b"3"


def test_changes_of_partitions_that_moved_are_never_written_back() -> None:
    async def scenario() -> dict[bytes, bytes | None]:
        data = PartitionedData(N)
        store = TableStore(data, lambda _c: True, Checkpoints())
        for i in range(40):
            store.put(f"c-{i}", CustomerState(nseq=i))
        gone = {partition_for("c-0", N), partition_for("c-1", N)}
        store.forget(gone, lambda cid: partition_for(cid, N))
        return store.take_dirty()

    dirty = asyncio.run(scenario())
    assert dirty and all(partition_for(k.decode(), N) not in {
        partition_for("c-0", N), partition_for("c-1", N)} for k in dirty)  # fmt: skip
    assert len(dirty) < 40
