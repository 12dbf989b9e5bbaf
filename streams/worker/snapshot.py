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
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("trigger_sanity.snapshot")

COPY_STEP = 5_000
"""Records moved between the local copy and memory or the producer's acknowledgements
between giving the event loop back (about one ``STEP_BUDGET`` of work)."""

_META = b"m"  # identity of the copy: which changelog it mirrors
_OFFSET = b"o"  # + partition: [offset of the last record held, wall ms of the update]
_VALUE = b"v"  # + partition + customer key: the changelog value


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Own:
    """A partition kept current with this worker's writes: the offset the copy holds it
    to, writes sent and not yet acknowledged, and acknowledged ones not yet in (a heap
    by offset; ``seq`` keeps the heap from comparing keys)."""

    held: int
    pending: int = 0
    seq: int = 0
    acked: list[tuple[int, int, bytes | None, bytes | None]] = field(default_factory=list)


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
        # partitions kept current with this worker's own writes (see on_sent)
        self._own: dict[int, _Own] = {}
        self.closed = False
        self.disabled = False  # a write to the database failed: no longer kept

    # ------------------------------------------------------------ reading

    def usable_offset(self, partition: int, beginning: int, end: int) -> int | None:
        """The offset of the last record the copy holds for ``partition``, if the copy
        can be trusted against a changelog partition spanning [beginning, end)."""
        held_at = self._held(partition)
        if held_at is None:
            return None
        offset, updated_ms = held_at
        age_ms = _now_ms() - updated_ms
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
        self._own.pop(partition, None)
        if self.closed or self.disabled:
            return
        # the offset goes first and comes back last: a crash in between leaves no copy
        # of this partition (writes survive a crash in the order they were made)
        self._guard(self._db.delete, _OFFSET + _part(partition))
        self._guard(self._db.delete_range, prefix, _VALUE + _part(partition + 1))
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
        # the values are in files, not only in memory: now the offset
        self._guard(self._db.flush, True)
        if self.disabled:
            return
        batch = WriteBatch(raw_mode=True)
        self._offset_into(batch, partition, offset, _now_ms())
        self._write(batch)
        yield n

    def apply(
        self,
        partition: int,
        records: Iterable[tuple[bytes | None, bytes | None, int]],
        caught_up: bool = True,
    ) -> None:
        """Changelog records (key, value or None for a tombstone, offset) read from the
        log or acknowledged by it, in offset order, written in one batch with the offset
        they bring the partition to. Records at or below the offset the copy holds are
        already in it (or a newer value is) and are skipped. Only onto a partition the
        copy holds from the beginning (``replace`` made it): else the records alone would
        claim a partition whose older records are missing. ``caught_up``: the records
        bring the copy up to the log's end as of now, which restarts its age (a chunk of
        a longer tail does not: see ``usable_offset``)."""
        from rocksdict import WriteBatch

        held_at = self._held(partition)
        if held_at is None:
            return
        held, stamp = held_at
        batch = WriteBatch(raw_mode=True)
        prefix = _VALUE + _part(partition)
        last = held
        for key, value, offset in records:
            if offset <= held:
                continue
            if key is None:  # a commit marker: only the offset moves
                last = max(last, offset)
                continue
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
            last = max(last, offset)
        if last > held:
            self._offset_into(batch, partition, last, _now_ms() if caught_up else stamp)
            self._write(batch)
            own = self._own.get(partition)
            if own is not None and not self.disabled:
                own.held = last

    def caught_up(self, partition: int, end: int, as_of_ms: int) -> None:
        """The copy holds the partition up to ``end`` - 1, the log's end at ``as_of_ms``:
        its age restarts then (not before: a tail read partly is still that old)."""
        from rocksdict import WriteBatch

        held_at = self._held(partition)
        if held_at is not None and held_at[0] >= end - 1:
            batch = WriteBatch(raw_mode=True)
            self._offset_into(batch, partition, held_at[0], max(held_at[1], as_of_ms))
            self._write(batch)

    # ------------------------------------------------------------ the worker's own writes

    def keep_current(self, partition: int) -> None:
        """The partition is loaded and owned: from now on the worker's writes to it are
        taken as they are acknowledged (``on_sent``)."""
        held_at = self._held(partition)
        if held_at is None:
            self._own.pop(partition, None)
            return
        self._own[partition] = _Own(held=held_at[0])

    def stop_keeping(self, partition: int) -> None:
        """The partition was revoked: what is acknowledged in order goes in; anything
        acknowledged later is not taken (the changelog's tail has it)."""
        if partition in self._own:
            self._write_run(partition, None)
        self._own.pop(partition, None)

    def on_sent(
        self, key: Any, value: Any, sent: asyncio.Future[Any], partition: int | None
    ) -> None:
        """A write to the changelog by this worker. It goes into the copy once the broker
        acknowledged it, and only when its offset directly follows what the copy holds:
        the two paths that write the changelog (write-back, faust's table writes) are
        acknowledged in offset order but registered here in another, and a record
        another writer put in between (a previous owner's late write) would otherwise be
        skipped for good. A write that failed may or may not be in the log: the
        partition's copy is then dropped (read whole at the next assignment)."""
        if partition is None:  # not placed yet: where it lands is known only when acked
            sent.add_done_callback(
                lambda w: (
                    None
                    if w.cancelled() or w.exception() is not None
                    else self._invalidate(w.result().partition, "a write sent unplaced")
                )
            )
            return
        own = self._own.get(partition)
        if own is None or self.closed or self.disabled:
            return  # not kept current: the tail has it
        own.pending += 1

        def done(w: asyncio.Future[Any]) -> None:
            if self._own.get(partition) is not own:
                return  # the partition was revoked or reloaded since
            own.pending -= 1
            if w.cancelled() or w.exception() is not None:
                self._invalidate(partition, f"a write to it failed: {_reason(w)}")
                return
            md = w.result()
            if md.partition != partition or not (
                isinstance(key, bytes) and (value is None or isinstance(value, bytes))
            ):
                self._invalidate(partition, "a write it cannot hold as bytes")
                return
            heapq.heappush(own.acked, (md.offset, own.seq, key, value))
            own.seq += 1

        sent.add_done_callback(done)

    def on_marker(self, partition: int, offset: int) -> None:
        """A transaction's commit marker at ``offset``: no record, but the copy's offset
        moves over it once everything before it is in."""
        own = self._own.get(partition)
        if own is None or self.closed or self.disabled:
            return
        heapq.heappush(own.acked, (offset, own.seq, None, None))
        own.seq += 1

    def write_acked(self, limit: int | None = None) -> bool:
        """Acknowledged writes go into the database: per partition, the run of offsets
        that directly follows what the copy holds, at most ``limit`` records in all (a
        sweep's flush can be a million: the caller steps through it). True if such
        writes are left."""
        budget = limit
        for partition in list(self._own):
            budget = self._write_run(partition, budget)
            if budget is not None and budget <= 0:
                break
        return any(o.acked and o.acked[0][0] <= o.held + 1 for o in self._own.values())

    def _write_run(self, partition: int, budget: int | None) -> int | None:
        own = self._own.get(partition)
        if own is None:
            return budget
        acked, held = own.acked, own.held
        run: list[tuple[bytes | None, bytes | None, int]] = []
        while acked and (budget is None or len(run) < budget):
            offset = acked[0][0]
            if offset <= held:  # already in, read from the log
                heapq.heappop(acked)
                continue
            if offset != held + 1:
                break
            _, _, key, value = heapq.heappop(acked)
            run.append((key, value, offset))
            held = offset
        if run:
            self.apply(partition, run)
        if acked and acked[0][0] > own.held + 1 and not own.pending:
            # Nothing of ours is in flight, yet a record sits between what the copy holds
            # and our next write: another writer's. The tail has it; stop here.
            log.info(
                "local copy of changelog partition %d stops at offset %d: offset %d was "
                "written by another producer (read from the changelog at the next start)",
                partition,
                own.held,
                own.held + 1,
            )
            self._own.pop(partition, None)
        return None if budget is None else budget - len(run)

    def _invalidate(self, partition: int, why: str) -> None:
        log.warning("local copy of changelog partition %d dropped: %s", partition, why)
        self._own.pop(partition, None)
        if not self.closed and not self.disabled:
            self._guard(self._db.delete, _OFFSET + _part(partition))

    def _held(self, partition: int) -> tuple[int, int] | None:
        """(offset, ms its age counts from) the copy holds ``partition`` to, if any."""
        if self.closed or self.disabled:
            return None
        raw = self._guard(self._db.get, _OFFSET + _part(partition))
        if raw is None:
            return None
        offset, stamp = orjson.loads(raw)
        return int(offset), int(stamp)

    def _write(self, batch: Any, options: Any = None) -> None:
        """One batch into the database. A batch is applied whole or not at all, so a
        failed write leaves the copy at its older, consistent offset."""
        if options is None:
            self._guard(self._db.write, batch)
        else:
            self._guard(self._db.write, batch, options)

    def _guard(self, op: Callable[..., Any], *args: Any) -> Any:
        """Every database call: when RocksDB fails one (a full disk), the copy stops
        being used and written (a restart reads more of the changelog); the worker goes
        on. Logged as an error, never silent."""
        if self.disabled:
            return None
        try:
            return op(*args)
        except Exception as exc:  # noqa: BLE001 - rocksdict raises bare Exception; logged, copy off
            log.error("local state copy at %s failed (%s), no longer used: %s", self.path,
                      getattr(op, "__name__", op), exc)  # fmt: skip
            self.disabled = True
            return None

    def close(self) -> None:
        if self.closed:
            return
        self.write_acked()
        self.closed = True
        self._db.close()

    def _offset_into(self, batch: Any, partition: int, offset: int, stamp_ms: int) -> None:
        batch.put(_OFFSET + _part(partition), orjson.dumps([offset, stamp_ms]))

    def _drop_all(self) -> None:
        self._db.delete_range(_OFFSET, b"p")  # every offset first (see replace)
        self._db.delete_range(_VALUE, b"w")


def _reason(w: asyncio.Future[Any]) -> str:
    return "cancelled" if w.cancelled() else repr(w.exception())
