"""The customers table's memory store, loaded from its changelog in bulk.

faust recovers a table by handing every changelog record through its per-event
machinery (fetcher, conductor, a queue per record): minutes for a million customers
(``bench/README.md``). This store reads
the changelog partitions it is newly assigned itself, with one plain consumer and
large fetches, before faust's recovery starts, and then reports the offset it
reached as "persisted": faust's recovery reads only what was written after that
(usually nothing). The dict it fills is the one faust's memory store uses, so
everything else (reads, writes, the worker's write-back) is unchanged.

With a local copy (``streams.worker.snapshot``, the ``rocksdb://`` store) a partition is
loaded from the copy and the changelog is read only after the copy's offset.

The dict is split by partition (``PartitionedData``): a million customers in one
dict meant one resize of it copying every entry while the event loop waited, and a
partition that moves to another worker is dropped in one step, not key by key.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as ClientTP
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from streams.contract.partitioning import partition_for
from streams.worker.loop import give_way
from streams.worker.snapshot import COPY_STEP, LocalSnapshot

log = logging.getLogger("trigger_sanity.changelog")

LOAD_FETCH_BYTES = 4 * 1024 * 1024
"""Most bytes of one fetch response while loading a changelog (a quarter per partition)."""

LOAD_STEP_RECORDS = 5_000
"""Records applied to memory between giving the event loop back while loading."""


class PartitionedData(MutableMapping[bytes, bytes]):
    """The memory store's mapping of key -> value bytes, one dict per partition (where
    murmur2 of the key puts it, as for the customers' input records)."""

    __slots__ = ("_parts", "partitions")

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._parts: dict[int, dict[bytes, bytes]] = {}

    def partition_of(self, key: bytes) -> int:
        return partition_for(key.decode("utf-8", "surrogateescape"), self.partitions)

    def part(self, partition: int) -> dict[bytes, bytes]:
        """The dict of one partition (made when first asked for)."""
        found = self._parts.get(partition)
        if found is None:
            found = self._parts[partition] = {}
        return found

    def drop(self, partition: int) -> int:
        """Forget a partition's keys at once; returns how many there were."""
        gone = self._parts.pop(partition, None)
        return 0 if gone is None else len(gone)

    def __getitem__(self, key: bytes) -> bytes:
        found = self._parts.get(self.partition_of(key))
        if found is None:
            raise KeyError(key)
        return found[key]

    def get(self, key: bytes, default: Any = None) -> Any:
        found = self._parts.get(self.partition_of(key))
        return default if found is None else found.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.part(self.partition_of(key))[key] = value

    def __delitem__(self, key: bytes) -> None:
        found = self._parts.get(self.partition_of(key))
        if found is None:
            raise KeyError(key)
        del found[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        found = self._parts.get(self.partition_of(key))
        return found is not None and key in found

    def __iter__(self) -> Iterator[bytes]:
        return chain.from_iterable(list(self._parts.values()))

    def __len__(self) -> int:
        return sum(len(d) for d in self._parts.values())

    def clear(self) -> None:
        self._parts.clear()


class BulkLoadedStore(MemoryStore):
    """faust's memory store, filled from the changelog in bulk at assignment."""

    def __init__(
        self,
        *args: Any,
        client_kwargs: dict[str, Any],
        partitions: int,
        snapshot: LocalSnapshot | None = None,
        before_load: Callable[[list[int]], Awaitable[None]] | None = None,
        kept_end: Callable[[int], int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        # With transactions: where this worker's own last commit left a changelog
        # partition (None: no commit since its load). Without, kept partitions are read
        # again by faust, as they always were.
        self.kept_end = kept_end
        # With transactions: claims the partitions' transactional ids, which settles
        # what a previous holder left open before the changelog's end is read.
        self.before_load = before_load
        self.client_kwargs = client_kwargs  # how to reach the broker
        self.partitions = partitions  # the table's partition count: where a key belongs
        self.snapshot = snapshot  # the rocksdb:// local copy, if configured
        super().__init__(*args, **kwargs)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data: PartitionedData = PartitionedData(self.partitions)
        self._loaded: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        """The last changelog offset loaded in bulk: faust recovers only what follows."""
        return self._loaded.get(tp)

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        changelog = self.table.changelog_topic.get_topic_name()
        if self.before_load is not None:
            await self.before_load(sorted(tp.partition for tp in assigned if tp.topic == changelog))
        for tp in revoked:
            self._loaded.pop(tp, None)
            if tp.topic == changelog:
                # moved to another worker (faust passes only those no longer assigned):
                # the new owner loads it from the changelog; so would we, if it came back
                self.data.drop(tp.partition)
                if self.snapshot is not None:
                    self.snapshot.stop_keeping(tp.partition)
        todo = sorted(tp for tp in newly_assigned if tp.topic == changelog)
        if todo:
            await self._load(todo)
        kept = sorted(tp for tp in assigned if tp.topic == changelog and tp not in newly_assigned)
        if kept and self.kept_end is not None:
            stale = await self._still_current(kept, self.kept_end)
            if stale:
                await self._load(stale)

    async def _still_current(
        self, tps: list[TP], kept_end: Callable[[int], int | None]
    ) -> list[TP]:
        """Partitions kept through a rebalance, with transactions. Where the changelog
        still ends where this worker's last commit (or its load) left it, memory is the
        changelog: faust is told they are read to their end. Left alone, faust would
        read them again from the first load's offset and wait for ever for the last
        offset, a commit marker no consumer is ever given. Where it ends elsewhere,
        another worker wrote it meanwhile (this one lost its membership for a while,
        paused, and got the partition back): returned, to be loaded again."""
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **self.client_kwargs
        )
        await consumer.start()
        try:
            ctps = [ClientTP(tp.topic, tp.partition) for tp in tps]
            ends: dict[ClientTP, int] = await consumer.end_offsets(ctps)
        finally:
            await consumer.stop()
        stale: list[TP] = []
        for ctp in ctps:
            tp = TP(ctp.topic, ctp.partition)
            expected = expected_end(kept_end(ctp.partition), self._loaded.get(tp))
            if ends[ctp] == expected:
                self._loaded[tp] = ends[ctp] - 1
            else:
                log.warning(
                    "changelog partition %d was written by another worker while this one "
                    "held it (ends at %d, not %d): loading it again",
                    ctp.partition, ends[ctp], expected,
                )  # fmt: skip
                stale.append(tp)
        return stale

    async def _load(self, tps: list[TP]) -> None:
        """Read ``tps`` from their beginning (or the local copy's offset) to their end
        offset at the start. Keys a previous assignment of the same partitions left
        behind are dropped first: a customer deleted meanwhile may have no tombstone
        left after compaction."""
        for tp in tps:
            self.data.drop(tp.partition)
        # Out of the collector's full passes, for good: the dicts filled here (their
        # entries were walked by every full pass during the load, each a stall) and
        # everything alive so far (see ``Maintenance.frozen``).
        gc.freeze()
        t0 = time.perf_counter()
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Only what committed: with transactions the end read below is the last
            # stable offset, and records of an aborted transaction are never state.
            isolation_level="read_committed",
            # Bounded responses: aiokafka reads and parses one on the event loop, in one
            # piece; large ones stalled it (bench/README.md)
            fetch_max_bytes=LOAD_FETCH_BYTES,
            max_partition_fetch_bytes=LOAD_FETCH_BYTES // 4,
            **self.client_kwargs,
        )
        await consumer.start()
        try:
            ctps = [ClientTP(tp.topic, tp.partition) for tp in tps]
            consumer.assign(ctps)
            ends: dict[ClientTP, int] = await consumer.end_offsets(ctps)
            ends_read_ms = int(time.time() * 1000)
            whole, from_copy = await self._position(consumer, ctps, ends)
            n = await self._read_to(consumer, ends, whole)
            for ctp in ctps:
                self._loaded[TP(ctp.topic, ctp.partition)] = ends[ctp] - 1
            if self.snapshot is not None:
                await self._copy_loaded(self.snapshot, ctps, ends, ends_read_ms, whole)
        finally:
            await consumer.stop()
        log.info(
            "loaded %d changelog records and %d from the local copy, of %d partition(s), in "
            "%.1f s (%d customers in memory)",
            n, from_copy, len(tps), time.perf_counter() - t0, len(self.data),
        )  # fmt: skip

    async def _position(
        self, consumer: AIOKafkaConsumer, ctps: list[ClientTP], ends: dict[ClientTP, int]
    ) -> tuple[dict[ClientTP, set[bytes]], int]:
        """Where each partition is read from: after the local copy's offset when the copy
        is usable (loaded into memory first), else from the beginning. Returns the
        partitions read whole (with the keys their load will see) and how many customers
        came from the copy."""
        snapshot = self.snapshot
        starts: dict[ClientTP, int] = await consumer.beginning_offsets(ctps)
        # Explicit positions: seek_to_beginning() raced with the consumer's own first
        # offset reset once and started a partition at its end (nothing was loaded).
        whole: dict[ClientTP, set[bytes]] = {}  # read from the beginning: keys seen
        from_copy = 0
        for tp in ctps:
            copied = (
                None
                if snapshot is None
                else snapshot.usable_offset(tp.partition, starts[tp], ends[tp])
            )
            taken = None
            if copied is not None and snapshot is not None:
                taken = await self._take_copy(snapshot, tp)  # None: unreadable
            if taken is None:
                consumer.seek(tp, starts[tp])
                whole[tp] = set()
            else:
                from_copy += taken
                consumer.seek(tp, copied + 1)  # type: ignore[operator]
        return whole, from_copy

    async def _read_to(
        self,
        consumer: AIOKafkaConsumer,
        ends: dict[ClientTP, int],
        whole: dict[ClientTP, set[bytes]],
    ) -> int:
        """Apply every record up to ``ends`` to memory (and the tail after a copy onto the
        copy), a step at a time; returns how many were read."""
        data, snapshot = self.data, self.snapshot
        n = 0
        todo = {tp for tp in ends if ends[tp] > await consumer.position(tp)}
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=500, max_records=LOAD_STEP_RECORDS)
            for tp, records in batches.items():
                n += _apply(data.part(tp.partition), records)
                if snapshot is None:
                    continue
                seen = whole.get(tp)
                if seen is not None:
                    seen.update(r.key for r in records)
                    continue
                for i in range(0, len(records), COPY_STEP):  # the tail after the copy
                    chunk = records[i : i + COPY_STEP]
                    snapshot.apply(
                        tp.partition,
                        ((r.key, r.value, r.offset) for r in chunk),
                        caught_up=False,  # its age restarts once all of it is in
                    )
                    await give_way()
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            await give_way()
        return n

    async def _copy_loaded(
        self,
        snapshot: LocalSnapshot,
        ctps: list[ClientTP],
        ends: dict[ClientTP, int],
        ends_read_ms: int,
        whole: dict[ClientTP, set[bytes]],
    ) -> None:
        """Partitions read whole replace their copy; from now on the worker's own
        writes to every loaded partition go into the copy too."""
        for ctp, keys in whole.items():
            part = self.data.part(ctp.partition)
            present = ((k, part[k]) for k in keys if k in part)
            for _ in snapshot.replacing(ctp.partition, present, ends[ctp] - 1):
                await give_way()  # a million customers: not in one piece
        for ctp in ctps:
            if ctp not in whole:
                # Read to the end: every offset below it is in, the last one may be a
                # transaction's commit marker rather than a record.
                snapshot.apply(ctp.partition, [(None, None, ends[ctp] - 1)], caught_up=False)
            snapshot.caught_up(ctp.partition, ends[ctp], ends_read_ms)
            snapshot.keep_current(ctp.partition)

    async def _take_copy(self, snapshot: LocalSnapshot, tp: ClientTP) -> int | None:
        """Fill memory with the local copy of ``tp``: how many customers, or None (and
        nothing left behind) when the copy cannot be read back."""
        data = self.data.part(tp.partition)
        taken: list[bytes] = []
        try:
            for key, value in snapshot.items(tp.partition):
                data[key] = value
                taken.append(key)
                if not len(taken) % COPY_STEP:
                    await give_way()  # a million customers: not in one piece
        except Exception as exc:  # noqa: BLE001 - rocksdict raises bare Exception; logged
            log.error("local copy of %s unreadable (%s): reading it whole", tp, exc)
            for key in taken:
                data.pop(key, None)
            snapshot.disabled = True
            return None
        return len(taken)

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        """faust's own recovery (what was written after the bulk load): onto the copy too,
        or the copy's offset would later move past records it never held."""
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        if self.snapshot is None:
            return
        per: dict[int, list[tuple[bytes, bytes | None, int]]] = {}
        for event in events:
            m = event.message
            per.setdefault(m.partition, []).append((m.key, m.value, m.offset))
        for partition, records in per.items():
            self.snapshot.apply(partition, records, caught_up=False)

    async def on_stop(self) -> None:
        if self.snapshot is not None:
            self.snapshot.close()
        await super().on_stop()


def expected_end(committed_end: int | None, loaded_offset: int | None) -> int:
    """Where a kept changelog partition ends if nobody else wrote it: after the later of
    this worker's last commit to it and its last load (offsets only grow); -1 (never
    an end) when neither is known, so that the partition is loaded again."""
    after_load = -1 if loaded_offset is None else loaded_offset + 1
    return max(-1 if committed_end is None else committed_end, after_load)


def _apply(data: MutableMapping[Any, Any], records: Iterable[Any]) -> int:
    n = 0
    for r in records:
        if r.value is None:
            data.pop(r.key, None)
        else:
            data[r.key] = r.value
        n += 1
    return n
