"""A local RocksDB copy of the customers changelog, so a restart reads only its tail.

The changelog stays the truth: this is a cache of it on the worker's disk (the
``TRIGGER_SANITY_STORE=rocksdb://`` store; state is still held in memory while the
worker runs). It holds, per changelog partition, every record up to an offset, and
that offset: at assignment the worker loads the partition from here and reads the
changelog from the next offset on, instead of from the beginning.

What goes in is only what is known to be in the changelog: the records loaded from
it, and the worker's own write-backs once the broker acknowledged them, each at the
offset the broker gave it. A write that failed is not in the log and not here. The
records and the offset they bring the partition to are written in one batch, so a
crash (or ``kill -9``) leaves an older but consistent copy, and the log's tail
brings it up to date. RocksDB's write-ahead log is written but not synced: a killed
process loses nothing (the operating system has it), a lost machine loses the newest
batches, which only means reading more of the tail. A whole partition's copy is
written without the log and flushed to its files before its offset is recorded.

A copy is not used (the partition is read from the beginning, and the copy
rewritten) when it cannot be trusted: it was made for another changelog topic or
partition count, its offset is not inside the partition's offsets (the topic was
recreated or truncated), or it is older than ``max_age`` (compaction may since have
removed tombstones from the tail, so deleted customers would come back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("trigger_sanity.snapshot")

_META = b"m"  # identity of the copy: which changelog it mirrors
_OFFSET = b"o"  # + partition: [offset of the last record held, wall ms of the update]
_VALUE = b"v"  # + partition + customer key: the changelog value


class SnapshotUnavailable(RuntimeError):
    """The local copy cannot be opened (missing package, locked by another worker)."""


def _part(partition: int) -> bytes:
    return partition.to_bytes(4, "big")


class LocalSnapshot:
    """The copy of one changelog topic, in one RocksDB database under ``path``."""

    def __init__(self, path: Path, topic: str, partitions: int, max_age_s: float) -> None:
        try:
            from rocksdict import Options, Rdict, WriteOptions
        except ImportError as exc:  # pragma: no cover - rocksdict is a dependency
            raise SnapshotUnavailable(
                "the rocksdb:// store needs the rocksdict package (pip install rocksdict)"
            ) from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db: Any = Rdict(str(path), options=Options(raw_mode=True))
        except Exception as exc:  # rocksdict raises a bare Exception for every open error
            raise SnapshotUnavailable(
                f"cannot open the local state copy at {path}: {exc} (is another worker "
                "using the same TRIGGER_SANITY_DATA_DIR? each needs its own)"
            ) from exc
        self._bulk = WriteOptions()
        # a property, though the stubs call it a method; replace() flushes before its offset
        self._bulk.disable_wal = True  # type: ignore[method-assign,assignment]
        self.path = path
        self.max_age_ms = int(max_age_s * 1000)
        identity = orjson.dumps({"topic": topic, "partitions": partitions})
        if self._db.get(_META) != identity:
            if self._db.get(_META) is not None:
                log.warning("local state copy at %s was for another changelog: dropped", path)
            self._drop_all()
            self._db[_META] = identity
        # partitions whose writes are taken as acknowledged, and per partition the writes
        # not yet in the database, in send order: [key, value, offset once acknowledged]
        self._live: set[int] = set()
        self._queue: dict[int, deque[list[Any]]] = {}
        self.closed = False
        self.disabled = False  # a write to the database failed: no longer kept

    # ------------------------------------------------------------ reading

    def usable_offset(self, partition: int, beginning: int, end: int) -> int | None:
        """The offset of the last record the copy holds for ``partition``, if the copy
        can be trusted against a changelog partition spanning [beginning, end)."""
        raw = self._db.get(_OFFSET + _part(partition))
        if raw is None:
            return None
        offset, updated_ms = orjson.loads(raw)
        age_ms = int(time.time() * 1000) - updated_ms
        if offset >= end or offset < beginning - 1:
            log.warning(
                "local copy of changelog partition %d is at offset %d, outside [%d, %d): "
                "reading it from the beginning",
                partition,
                offset,
                beginning,
                end,
            )
            return None
        if age_ms > self.max_age_ms and offset != end - 1:  # no tail: nothing compacted
            log.info(
                "local copy of changelog partition %d is %.1f h old (limit %.1f h): "
                "reading it from the beginning",
                partition,
                age_ms / 3_600_000,
                self.max_age_ms / 3_600_000,
            )
            return None
        return int(offset)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every customer key and value the copy holds for ``partition``."""
        prefix = _VALUE + _part(partition)
        n = len(prefix)
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key[n:], value

    # ------------------------------------------------------------ writing

    def replace(self, partition: int, items: Iterable[tuple[bytes, bytes]], offset: int) -> int:
        """The partition as read from the changelog's beginning up to ``offset``."""
        counts = list(self.replacing(partition, items, offset))
        return counts[-1] if counts else 0

    def replacing(
        self, partition: int, items: Iterable[tuple[bytes, bytes]], offset: int, step: int = 5_000
    ) -> Iterator[int]:
        """``replace`` in steps of ``step`` records (yielding the count so far), so that
        a worker writing a million customers can give its event loop back in between."""
        from rocksdict import WriteBatch

        prefix = _VALUE + _part(partition)
        # the offset goes first and comes back last: a crash in between leaves no copy
        # of this partition (writes survive a crash in the order they were made)
        if self.closed or self.disabled:
            yield 0
            return
        self._queue.pop(partition, None)
        self._live.discard(partition)
        self._db.delete(_OFFSET + _part(partition))
        self._db.delete_range(prefix, _VALUE + _part(partition + 1))
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key, value in items:
            batch.put(prefix + key, value)
            n += 1
            if n % step == 0:
                self._write(batch, self._bulk)
                if self.disabled:
                    return
                batch = WriteBatch(raw_mode=True)
                yield n
        self._write(batch, self._bulk)
        if self.disabled:
            return
        self._db.flush(True)  # the values are in files, not only in memory: now the offset
        batch = WriteBatch(raw_mode=True)
        self._offset_into(batch, partition, offset)
        self._write(batch)
        yield n

    def apply(self, partition: int, records: Iterable[tuple[bytes, bytes | None, int]]) -> None:
        """Changelog records (key, value or None for a tombstone, offset) read from the
        log or acknowledged by it, in offset order, written in one batch with the offset
        they bring the partition to. Records at or below the offset the copy holds are
        already in it (or a newer value is) and are skipped. Only onto a partition the
        copy holds from the beginning (``replace`` made it): else the records alone would
        claim a partition whose older records are missing."""
        from rocksdict import WriteBatch

        if self.closed or self.disabled:
            return
        held_raw = self._db.get(_OFFSET + _part(partition))
        if held_raw is None:
            return
        held = int(orjson.loads(held_raw)[0])
        batch = WriteBatch(raw_mode=True)
        prefix = _VALUE + _part(partition)
        last = held
        for key, value, offset in records:
            if offset <= held:
                continue
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
            last = max(last, offset)
        if last > held:  # the time is that of the offset's last move (see usable_offset)
            self._offset_into(batch, partition, last)
            self._write(batch)

    # ------------------------------------------------------------ the worker's own writes

    def keep_current(self, partition: int) -> None:
        """The partition is loaded and owned: from now on the worker's writes to it are
        taken as they are acknowledged (``on_sent``)."""
        self._queue[partition] = deque()
        self._live.add(partition)

    def stop_keeping(self, partition: int) -> None:
        """The partition was revoked: what is acknowledged in order goes in; anything
        acknowledged later is not taken (the changelog's tail has it)."""
        if partition in self._live:
            self._write_ready(partition, None)
        self._live.discard(partition)
        self._queue.pop(partition, None)

    def on_sent(
        self, key: Any, value: Any, sent: asyncio.Future[Any], partition: int | None
    ) -> None:
        """A write to the changelog, in the order it was handed to the producer. It goes
        into the copy once it and every write sent to its partition before it are
        acknowledged (``write_acked``), so the copy never records an offset ahead of a
        write still in flight. A write that failed may or may not be in the log: the
        partition's copy is then dropped (read whole at the next assignment)."""
        if partition is None:  # not placed yet: its order among the others is unknown
            sent.add_done_callback(
                lambda w: None
                if w.cancelled() or w.exception() is not None
                else self._invalidate(w.result().partition, "a write sent unplaced")
            )
            return
        queue = self._queue.get(partition)
        if queue is None or self.closed or self.disabled:
            return  # not kept current: the tail has it
        entry: list[Any] = [key, value, None]
        queue.append(entry)

        def done(w: asyncio.Future[Any]) -> None:
            if self._queue.get(partition) is not queue:
                return  # the partition was revoked or reloaded since
            if w.cancelled() or w.exception() is not None:
                self._invalidate(partition, f"a write to it failed: {_reason(w)}")
                return
            md = w.result()
            if md.partition != partition or not (
                isinstance(key, bytes) and (value is None or isinstance(value, bytes))
            ):
                self._invalidate(partition, "a write it cannot hold as bytes")
                return
            entry[2] = md.offset

        sent.add_done_callback(done)

    def write_acked(self, limit: int | None = None) -> bool:
        """Acknowledged writes go into the database: per partition, the leading writes
        that are acknowledged (in send order, so everything below the offset recorded is
        in), at most ``limit`` records in all (a sweep's flush can be a million: the
        caller steps through it). True if acknowledged writes are left."""
        budget = limit
        for partition in list(self._queue):
            budget = self._write_ready(partition, budget)
            if budget is not None and budget <= 0:
                break
        return any(q and q[0][2] is not None for q in self._queue.values())

    def _write_ready(self, partition: int, budget: int | None) -> int | None:
        queue = self._queue.get(partition)
        ready: list[tuple[bytes, bytes | None, int]] = []
        while queue and queue[0][2] is not None and (budget is None or len(ready) < budget):
            key, value, offset = queue.popleft()
            ready.append((key, value, offset))
        if ready:
            ready.sort(key=lambda r: r[2])
            self.apply(partition, ready)
        return None if budget is None else budget - len(ready)

    def _invalidate(self, partition: int, why: str) -> None:
        log.warning("local copy of changelog partition %d dropped: %s", partition, why)
        self._queue.pop(partition, None)
        self._live.discard(partition)
        if not self.closed and not self.disabled:
            self._db.delete(_OFFSET + _part(partition))

    def _write(self, batch: Any, options: Any = None) -> None:
        """One batch into the database. A batch is applied whole or not at all, so a
        failed write leaves the copy at its older, consistent offset; the copy then
        stops taking writes (a restart reads more of the changelog), the worker goes on."""
        try:
            if options is None:
                self._db.write(batch)
            else:
                self._db.write(batch, options)
        except Exception as exc:  # noqa: BLE001 - rocksdict raises bare Exception; logged, copy off
            log.error("local state copy at %s failed a write, no longer kept: %s", self.path, exc)
            self.disabled = True

    @property
    def acked_pending(self) -> int:
        return sum(len(q) for q in self._queue.values())

    def close(self) -> None:
        if self.closed:
            return
        self.write_acked()
        self.closed = True
        self._db.close()

    def _offset_into(self, batch: Any, partition: int, offset: int) -> None:
        batch.put(_OFFSET + _part(partition), orjson.dumps([offset, int(time.time() * 1000)]))

    def _drop_all(self) -> None:
        self._db.delete_range(_OFFSET, b"p")  # every offset first (see replace)
        self._db.delete_range(_VALUE, b"w")


def _reason(w: asyncio.Future[Any]) -> str:
    return "cancelled" if w.cancelled() else repr(w.exception())
