"""The rocksdb:// store's local copy of the changelog (streams.snapshot), on a real
RocksDB database in a temporary directory: what it will and will not be trusted with."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from streams.snapshot import LocalSnapshot, SnapshotUnavailable

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


def test_acknowledged_write_backs_and_the_tail_land_with_their_offsets(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    snap.replace(0, [(b"a", b"1"), (b"b", b"1")], offset=4)
    snap.acknowledged(b"a", b"2", partition=0, offset=5)
    snap.acknowledged(b"b", None, partition=0, offset=6)  # deleted
    snap.acknowledged(b"c", b"1", partition=0, offset=7)
    assert snap.write_acked(limit=2)  # one left
    assert snap.usable_offset(0, 0, 8) == 6
    assert dict(snap.items(0)) == {b"a": b"2"}
    assert not snap.write_acked(limit=2)
    assert snap.usable_offset(0, 0, 8) == 7
    snap.apply(0, [(b"a", b"3", 8), (b"d", b"1", 9)])  # read from the tail
    assert snap.usable_offset(0, 0, 10) == 9
    assert dict(snap.items(0)) == {b"a": b"3", b"c": b"1", b"d": b"1"}
    snap.close()


def test_records_for_a_partition_never_read_whole_are_not_kept(tmp_path: Path) -> None:
    """They alone would claim a partition whose earlier records the copy lacks."""
    snap = _copy(tmp_path)
    snap.acknowledged(b"a", b"2", partition=3, offset=50)
    snap.write_acked()
    snap.apply(3, [(b"b", b"1", 51)])
    assert snap.usable_offset(3, 0, 52) is None
    snap.close()


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
        import os, signal
        from pathlib import Path
        from streams.snapshot import LocalSnapshot
        snap = LocalSnapshot(Path({str(tmp_path)!r}) / "copy.rocksdb", {TOPIC!r}, 4, 86400.0)
        snap.replace(0, [(b"c%d" % i, b"v") for i in range(1000)], offset=999)
        snap.acknowledged(b"c1", b"new", 0, 1000)
        snap.write_acked()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    assert proc.returncode == -9
    snap = _copy(tmp_path)
    assert snap.usable_offset(0, 0, 1001) == 1000
    items = dict(snap.items(0))
    assert len(items) == 1000 and items[b"c1"] == b"new"
    snap.close()
