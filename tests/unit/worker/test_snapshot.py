"""The rocksdb:// store's local copy of the changelog (streams.snapshot), on a real
RocksDB database in a temporary directory: what it will and will not be trusted with."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.worker.snapshot import LocalSnapshot, SnapshotUnavailable
from tests.helpers import ROOT

TOPIC = "app-customers-changelog"
DAY_S = 86_400.0


def _copy(path: Path, topic: str = TOPIC, partitions: int = 4) -> LocalSnapshot:
    return LocalSnapshot(path / "copy.rocksdb", topic, partitions, max_age_s=DAY_S)


def test_a_partition_read_whole_is_trusted_up_to_its_offset_and_reopens(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    snap.replace(1, [(b"c1", b"s1"), (b"c2", b"s2")], offset=9)
    snap.replace(2, [(b"c3", b"s3")], offset=4)
    snap.close()
    snap = _copy(tmp_path)
    assert snap.usable_offset(1, beginning=0, end=10) == 9
    assert dict(snap.items(1)) == {b"c1": b"s1", b"c2": b"s2"}
    assert dict(snap.items(2)) == {b"c3": b"s3"}
    assert snap.usable_offset(0, beginning=0, end=10) is None  # never read whole
    snap.close()


@pytest.mark.parametrize(
    ("beginning", "end", "trusted"),
    [
        (0, 10, True),  # the tail after offset 9 is empty
        (0, 25, True),  # fifteen records to read after the copy
        (10, 25, True),  # the log starts right after what the copy holds
        (0, 9, False),  # the copy is ahead of the log: topic recreated or truncated
        (12, 25, False),  # records after the copy were deleted from the log
    ],
    ids=["caught_up", "tail_to_read", "log_starts_after_copy", "copy_ahead", "gap"],
)
def test_a_copy_is_used_only_where_the_log_can_complete_it(
    tmp_path: Path, beginning: int, end: int, trusted: bool
) -> None:
    snap = _copy(tmp_path)
    snap.replace(0, [(b"c", b"s")], offset=9)
    assert (snap.usable_offset(0, beginning, end) == 9) is trusted
    snap.close()


def test_a_copy_older_than_its_max_age_is_not_trusted(tmp_path: Path) -> None:
    """Compaction may have dropped the tombstones of customers deleted since."""
    snap = LocalSnapshot(tmp_path / "copy.rocksdb", TOPIC, 4, max_age_s=0.001)
    snap.replace(0, [(b"c", b"s")], offset=3)
    # the recorded update time is a wall-clock ms: make it a day old
    snap._db[b"o" + (0).to_bytes(4, "big")] = orjson.dumps([3, 1])
    assert snap.usable_offset(0, 0, 10) is None
    snap.close()


def test_a_copy_of_another_changelog_or_partition_count_is_dropped(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    snap.replace(0, [(b"c", b"s")], offset=3)
    snap.close()
    snap = _copy(tmp_path, partitions=8)
    assert snap.usable_offset(0, 0, 10) is None and not list(snap.items(0))
    snap.close()
    snap = _copy(tmp_path, topic="other-customers-changelog", partitions=8)
    snap.replace(0, [(b"c", b"s")], offset=3)
    snap.close()
    snap = _copy(tmp_path, partitions=8)
    assert snap.usable_offset(0, 0, 10) is None


class _Producer:
    """Changelog sends as the worker makes them: futures the broker acknowledges (with
    the partition and offset it gave) or rejects, on a real event loop."""

    def __init__(self, snap: LocalSnapshot) -> None:
        self.snap = snap
        self.loop = asyncio.new_event_loop()

    def send(self, key: bytes, value: bytes | None, partition: int = 0) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.snap.on_sent(key, value, fut, partition)
        return fut

    def ack(self, fut: asyncio.Future[Any], offset: int, partition: int = 0) -> None:
        fut.set_result(SimpleNamespace(partition=partition, offset=offset))
        self.settle()

    def reject(self, fut: asyncio.Future[Any]) -> None:
        fut.set_exception(RuntimeError("NotLeaderForPartition"))
        self.settle()

    def settle(self) -> None:
        self.loop.run_until_complete(asyncio.sleep(0))  # done callbacks run


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[tuple[LocalSnapshot, _Producer]]:
    """Partition 0 read whole up to offset 4 (a=1, b=1), owned and kept current."""
    snap = _copy(tmp_path)
    snap.replace(0, [(b"a", b"1"), (b"b", b"1")], offset=4)
    snap.keep_current(0)
    producer = _Producer(snap)
    yield snap, producer
    snap.close()
    producer.loop.close()


def test_acknowledged_writes_and_the_tail_land_with_their_offsets(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    snap, producer = kept
    a, b, c = producer.send(b"a", b"2"), producer.send(b"b", None), producer.send(b"c", b"1")
    producer.ack(a, 5)
    producer.ack(b, 6)  # b deleted
    producer.ack(c, 7)
    assert snap.write_acked(limit=2)  # one left
    assert snap.usable_offset(0, 0, 8) == 6
    assert dict(snap.items(0)) == {b"a": b"2"}
    assert not snap.write_acked(limit=2)
    assert snap.usable_offset(0, 0, 8) == 7
    snap.apply(0, [(b"a", b"3", 8), (b"d", b"1", 9)])  # read from the tail
    assert snap.usable_offset(0, 0, 10) == 9
    assert dict(snap.items(0)) == {b"a": b"3", b"c": b"1", b"d": b"1"}


def test_a_write_acknowledged_before_an_earlier_one_waits_for_it(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    """Two paths write the changelog (write-back, faust's own table writes) and their
    acknowledgements can come out of offset order: recording offset 6 while the write
    at 5 is not in would leave a hole a kill -9 makes permanent."""
    snap, producer = kept
    first, second = producer.send(b"\x00delivered-0", b"7"), producer.send(b"a", b"2")
    producer.ack(second, 6)
    assert not snap.write_acked()
    assert snap.usable_offset(0, 0, 7) == 4  # nothing recorded past the write in flight
    producer.ack(first, 5)
    snap.write_acked()
    assert snap.usable_offset(0, 0, 7) == 6
    assert dict(snap.items(0))[b"\x00delivered-0"] == b"7"


def test_a_step_limit_never_records_an_offset_past_a_write_not_yet_in(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    """faust's table writes are registered before they reach the producer, write-backs
    after: registered [F, W], yet W gets offset 5 and F offset 6. Stepping one record at
    a time must still put W in before F."""
    snap, producer = kept
    f = producer.send(b"\x00delivered-0", b"9")
    w = producer.send(b"a", b"2")
    producer.ack(w, 5)
    producer.ack(f, 6)
    assert snap.write_acked(limit=1)
    assert snap.usable_offset(0, 0, 7) == 5 and dict(snap.items(0))[b"a"] == b"2"
    assert not snap.write_acked(limit=1)
    assert snap.usable_offset(0, 0, 7) == 6
    assert dict(snap.items(0))[b"\x00delivered-0"] == b"9"


def test_a_record_another_producer_put_in_between_stops_the_copy_before_it(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    """A previous owner's late write lands at offset 5, ours at 6: recording 6 would
    leave 5 out for good. The copy stays at 4 and the next start reads from 5."""
    snap, producer = kept
    producer.ack(producer.send(b"a", b"ours"), 6)
    snap.write_acked()
    assert snap.usable_offset(0, 0, 7) == 4
    producer.ack(producer.send(b"b", b"ours-later"), 7)  # no longer kept current
    snap.write_acked()
    assert snap.usable_offset(0, 0, 8) == 4
    assert dict(snap.items(0)) == {b"a": b"1", b"b": b"1"}


def test_a_tail_read_in_part_keeps_the_copys_age(tmp_path: Path) -> None:
    """An old copy whose tail is read only partly (the worker killed meanwhile) must
    not pass for fresh: the age restarts only once the copy reached the log's end."""
    snap = LocalSnapshot(tmp_path / "copy.rocksdb", TOPIC, 4, max_age_s=3600.0)
    snap.replace(0, [(b"c", b"s")], offset=3)
    snap._db[b"o" + (0).to_bytes(4, "big")] = orjson.dumps([3, 1])  # 1970: very old
    snap.apply(0, [(b"c", b"t", 4)], caught_up=False)
    assert snap.usable_offset(0, 0, 10) is None  # still as old as before
    snap.apply(0, [(b"d", b"u", 9)], caught_up=False)
    snap.caught_up(0, end=10, as_of_ms=int(time.time() * 1000))
    assert snap.usable_offset(0, 0, 12) == 9
    snap.close()


def test_a_database_that_fails_turns_the_copy_off_and_the_worker_goes_on(
    kept: tuple[LocalSnapshot, _Producer], caplog: pytest.LogCaptureFixture
) -> None:
    snap, producer = kept
    snap._db.close()  # every call now raises, as on a lost disk
    producer.ack(producer.send(b"a", b"2"), 5)
    snap.write_acked()  # no exception
    assert snap.disabled and "no longer used" in caplog.text
    assert snap.usable_offset(0, 0, 6) is None
    snap.apply(0, [(b"a", b"3", 6)])
    snap.closed = True  # the handle is gone already


def test_a_rejected_write_drops_the_partitions_copy(kept: tuple[LocalSnapshot, _Producer]) -> None:
    """A rejected (or timed-out) write may still be in the log: the copy cannot know."""
    snap, producer = kept
    ok, failed = producer.send(b"a", b"2"), producer.send(b"b", b"2")
    producer.ack(ok, 5)
    producer.reject(failed)
    snap.write_acked()
    assert snap.usable_offset(0, 0, 7) is None


def test_a_late_acknowledgement_after_the_partition_came_back_changes_nothing(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    """Sent while owned, acknowledged after the partition moved away and back (the
    copy was completed from the tail meanwhile, with another worker's newer value)."""
    snap, producer = kept
    early = producer.send(b"a", b"ours-old")
    snap.stop_keeping(0)  # revoked, the write still in flight
    snap.apply(0, [(b"a", b"theirs-new", 9)])  # back: the tail read at assignment
    snap.keep_current(0)
    producer.ack(early, 5)
    snap.write_acked()
    assert dict(snap.items(0))[b"a"] == b"theirs-new"
    assert snap.usable_offset(0, 0, 10) == 9


def test_records_at_or_below_the_copys_offset_are_not_applied_again(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    snap, _ = kept
    stamp = snap._db[b"o" + (0).to_bytes(4, "big")]
    snap.apply(0, [(b"a", b"stale", 3), (b"b", None, 4)])
    assert dict(snap.items(0)) == {b"a": b"1", b"b": b"1"}
    assert snap._db[b"o" + (0).to_bytes(4, "big")] == stamp  # the age did not restart


def test_an_old_copy_with_nothing_after_it_in_the_log_is_still_trusted(tmp_path: Path) -> None:
    """The age limit guards deletes compacted out of the tail; no tail, no risk."""
    snap = LocalSnapshot(tmp_path / "copy.rocksdb", TOPIC, 4, max_age_s=1.0)
    snap.replace(0, [(b"c", b"s")], offset=3)
    snap._db[b"o" + (0).to_bytes(4, "big")] = orjson.dumps([3, 1])
    assert snap.usable_offset(0, 0, 4) == 3
    assert snap.usable_offset(0, 0, 5) is None
    snap.close()


def test_writes_to_a_partition_never_read_whole_are_not_kept(tmp_path: Path) -> None:
    """They alone would claim a partition whose earlier records the copy lacks."""
    snap = _copy(tmp_path)
    producer = _Producer(snap)
    producer.ack(producer.send(b"a", b"2", partition=3), 50, partition=3)
    snap.write_acked()
    snap.apply(3, [(b"b", b"1", 51)])
    assert snap.usable_offset(3, 0, 52) is None
    snap.close()
    producer.loop.close()


def test_a_second_worker_on_the_same_data_dir_gets_a_clear_error(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    try:
        with pytest.raises(SnapshotUnavailable, match="TRIGGER_SANITY_DATA_DIR"):
            _copy(tmp_path)
    finally:
        snap.close()


def test_a_killed_process_leaves_the_copy_it_had_acknowledged(tmp_path: Path) -> None:
    """kill -9 right after writing: the write-ahead log (not synced, in the OS's cache)
    gives back every completed write on the next open."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from pathlib import Path
        from types import SimpleNamespace
        from streams.worker.snapshot import LocalSnapshot
        snap = LocalSnapshot(Path({str(tmp_path)!r}) / "copy.rocksdb", {TOPIC!r}, 4, 86400.0)
        snap.replace(0, [(b"c%d" % i, b"v") for i in range(1000)], offset=999)
        snap.keep_current(0)
        loop = asyncio.new_event_loop()
        sent = loop.create_future()
        snap.on_sent(b"c1", b"new", sent, 0)
        sent.set_result(SimpleNamespace(partition=0, offset=1000))
        loop.run_until_complete(asyncio.sleep(0))
        snap.write_acked()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT)
    assert proc.returncode == -9
    snap = _copy(tmp_path)
    assert snap.usable_offset(0, 0, 1001) == 1000
    items = dict(snap.items(0))
    assert len(items) == 1000 and items[b"c1"] == b"new"
    snap.close()


def test_a_transactions_commit_marker_is_stepped_over_once_its_records_are_in(
    kept: tuple[LocalSnapshot, _Producer],
) -> None:
    """With transactions, offset 7 after a transaction's writes at 5 and 6 is its commit
    marker, no record: the copy must reach 7, or our next write at 8 would look like
    another producer's gap and stop the copy."""
    snap, producer = kept
    a, b = producer.send(b"a", b"2"), producer.send(b"b", b"2")
    snap.on_marker(0, 7)  # told after the commit, maybe before the records are in
    producer.ack(b, 6)
    assert not snap.write_acked()
    assert snap.usable_offset(0, 0, 8) == 4  # not past a record still missing
    producer.ack(a, 5)
    snap.write_acked()
    assert snap.usable_offset(0, 0, 8) == 7
    c = producer.send(b"c", b"1")
    producer.ack(c, 8)
    snap.write_acked()
    assert snap.usable_offset(0, 0, 9) == 8
    assert dict(snap.items(0)) == {b"a": b"2", b"b": b"2", b"c": b"1"}


def test_a_tail_that_ends_with_a_commit_marker_reaches_the_logs_end(tmp_path: Path) -> None:
    """A load reads to the end offset; a record-less marker as its last offset still
    counts as held (``apply`` with no key moves only the offset)."""
    snap = _copy(tmp_path)
    snap.replace(0, [(b"a", b"1")], offset=2)
    snap.apply(0, [(b"a", b"2", 3), (None, None, 4)])
    assert snap.usable_offset(0, 0, 5) == 4
    assert dict(snap.items(0)) == {b"a": b"2"}
    snap.close()
