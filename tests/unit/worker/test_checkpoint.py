"""The checkpoint ledger: an input offset is committable only once every write its
record caused is acknowledged, in read order; commit metadata carries the frontier."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.core.clock import StreamClock
from streams.worker.checkpoint import Checkpoints, WriteFailed, frontier_meta, parse_frontier

P0 = ("purchases", 0)
O0 = ("outbound", 0)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_offset_waits_for_the_state_its_record_wrote() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)
        cp.close(P0, 11, "m")
        assert cp.committable() == {}
        assert cp.pending == 1
        write.set_result(None)
        assert cp.committable() == {P0: (11, "m")}
        assert cp.pending == 0

    _run(scenario())


def test_a_later_record_never_overtakes_an_earlier_one() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        slow, fast = loop.create_future(), loop.create_future()
        cp.track(slow)
        cp.close(P0, 5)
        cp.track(fast)
        cp.close(P0, 6)
        fast.set_result(None)
        assert cp.committable() == {}  # offset 6 would skip record 4's unacknowledged state
        slow.set_result(None)
        assert cp.committable() == {P0: (6, "")}

    _run(scenario())


def test_records_without_writes_follow_in_read_order() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)
        cp.close(O0, 3)
        cp.close(P0, 9)  # wrote nothing, but was read after outbound@2
        assert cp.committable() == {}
        write.set_result(None)
        assert cp.committable() == {O0: (3, ""), P0: (9, "")}

    _run(scenario())


def test_committed_offsets_are_not_offered_again() -> None:
    async def scenario() -> None:
        cp = Checkpoints()
        cp.close(P0, 4)
        offsets = cp.committable()
        cp.committed(offsets)
        assert cp.committable() == {}
        cp.close(P0, 5)
        assert cp.committable() == {P0: (5, "")}

    _run(scenario())


def test_a_rejected_write_stops_the_commit_and_names_the_record() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)
        cp.close(P0, 8)
        write.set_exception(OSError("MessageSizeTooLarge"))
        with pytest.raises(WriteFailed, match=r"purchases\[0\]@7.*MessageSizeTooLarge"):
            cp.committable()

    _run(scenario())


def test_revoked_partitions_are_forgotten() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)
        cp.close(P0, 2)
        cp.close(O0, 7)
        cp.forget([P0])
        assert cp.committable() == {O0: (7, "")}  # no longer behind P0's pending write

    _run(scenario())


def test_durable_waits_for_timer_writes_not_yet_closed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)  # a timer's release: no record closes it yet
        waiter = asyncio.ensure_future(cp.durable())
        await asyncio.sleep(0)
        assert not waiter.done()
        write.set_result(None)
        await asyncio.wait_for(waiter, 1)

    _run(scenario())


def test_durable_raises_when_a_write_failed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cp = Checkpoints()
        write = loop.create_future()
        cp.track(write)
        cp.close(P0, 1)
        write.set_exception(OSError("broker gone"))
        with pytest.raises(WriteFailed, match="broker gone"):
            await cp.durable()

    _run(scenario())


@pytest.mark.parametrize(
    ("meta", "frontier"),
    [
        (frontier_meta(1_790_000_000_000), 1_790_000_000_000),
        (frontier_meta(None), None),
        ("", None),
        ("written by another tool", None),
        ('{"ts": 99, "frontier": 5}', None),
        ('{"ts": 1, "frontier": true}', None),
        ('{"ts": 1, "frontier": "5"}', None),
    ],
    ids=["ours", "no-record-yet", "empty", "foreign-text", "future-version", "bool", "string"],
)
def test_commit_metadata_round_trip_and_foreign_values(meta: str, frontier: int | None) -> None:
    assert parse_frontier(meta) == frontier


def test_a_resumed_clock_gives_re_read_records_the_uninterrupted_frontier() -> None:
    events = [1_000, 5_000, 3_000, 4_000, 6_000]
    straight = StreamClock(("purchases",), {"purchases": 500})
    arrivals = []
    for t in events:
        arrivals.append(straight.frontier("purchases"))
        straight.observe("purchases", t)
    # a crash after the first two records were committed: resume from their frontier
    first = StreamClock(("purchases",), {"purchases": 500})
    for t in events[:2]:
        first.observe("purchases", t)
    resumed = StreamClock(("purchases",), {"purchases": 500})
    resumed.resume("purchases", first.frontier("purchases"))
    again = []
    for t in events[2:]:
        again.append(resumed.frontier("purchases"))
        resumed.observe("purchases", t)
    assert again == arrivals[2:]
    assert resumed.latest == 6_000
