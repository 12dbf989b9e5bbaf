"""The customers table's memory store, loaded from its changelog in bulk.

faust recovers a table by handing every changelog record through its per-event
machinery (fetcher, conductor, a queue per record): about 6,000 records/s on our
2-core machine, close to three minutes for a million customers. This store reads
the changelog partitions it is newly assigned itself, with one plain consumer and
large fetches, before faust's recovery starts, and then reports the offset it
reached as "persisted": faust's recovery reads only what was written after that
(usually nothing). The dict it fills is the one faust's memory store uses, so
everything else (reads, writes, the worker's write-back) is unchanged.

With a local copy (``streams.snapshot``, the ``rocksdb://`` store) a partition is
loaded from the copy and the changelog is read only after the copy's offset.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, MutableMapping
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


class BulkLoadedStore(MemoryStore):
    """faust's memory store, filled from the changelog in bulk at assignment."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loaded: dict[TP, int] = {}
        # set by the table that creates it (faust builds stores from a URL alone):
        self.client_kwargs: dict[str, Any] = {}  # how to reach the broker
        self.partitions = 1  # the table's partition count: where a key belongs
        self.snapshot: LocalSnapshot | None = None  # the local copy, if configured

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
        for tp in revoked:
            self._loaded.pop(tp, None)
            if self.snapshot is not None and tp.topic == changelog:
                self.snapshot.stop_keeping(tp.partition)
        todo = sorted(tp for tp in newly_assigned if tp.topic == changelog)
        if todo:
            await self._load(todo)

    async def _load(self, tps: list[TP]) -> None:
        """Read ``tps`` from their beginning to their end offset at the start. Keys a
        previous assignment of the same partitions left behind are dropped first: a
        customer deleted meanwhile may have no tombstone left after compaction."""
        data = self.data
        numbers = {tp.partition for tp in tps}
        if data:
            parts = self.partitions
            stale = [k for k in data if partition_for(k.decode("utf-8"), parts) in numbers]
            for k in stale:
                del data[k]
        # Out of the collector's full passes, for good: the dict filled here (its million
        # entries were walked by every full pass of the load, about 50 ms each, every
        # second or so) and everything alive so far (see ``Worker._frozen``).
        gc.freeze()
        t0 = time.perf_counter()
        snapshot = self.snapshot
        from_copy = 0
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Bounded responses: aiokafka reads and parses one on the event loop, in one
            # piece; 64 MB of them stalled it 200-400 ms (4 MB: a few ms, same load time)
            fetch_max_bytes=LOAD_FETCH_BYTES,
            max_partition_fetch_bytes=LOAD_FETCH_BYTES // 4,
            **self.client_kwargs,
        )
        await consumer.start()
        n = 0
        try:
            ctps = [ClientTP(tp.topic, tp.partition) for tp in tps]
            consumer.assign(ctps)
            starts: dict[ClientTP, int] = await consumer.beginning_offsets(ctps)
            ends: dict[ClientTP, int] = await consumer.end_offsets(ctps)
            ends_read_ms = int(time.time() * 1000)
            # Explicit positions: seek_to_beginning() raced with the consumer's own first
            # offset reset once and started a partition at its end (nothing was loaded).
            whole: dict[ClientTP, set[bytes]] = {}  # read from the beginning: keys seen
            for tp in ctps:
                copied = (
                    None
                    if snapshot is None
                    else snapshot.usable_offset(tp.partition, starts[tp], ends[tp])
                )
                if copied is None:
                    consumer.seek(tp, starts[tp])
                    whole[tp] = set()
                else:
                    assert snapshot is not None
                    taken = await self._take_copy(snapshot, tp)
                    if taken is None:  # unreadable: read the partition whole instead
                        consumer.seek(tp, starts[tp])
                        whole[tp] = set()
                        continue
                    from_copy += taken
                    consumer.seek(tp, copied + 1)
            todo = {tp for tp in ctps if ends[tp] > await consumer.position(tp)}
            while todo:
                batches = await consumer.getmany(
                    *todo, timeout_ms=500, max_records=LOAD_STEP_RECORDS
                )
                for tp, records in batches.items():
                    n += _apply(data, records)
                    if snapshot is None:
                        continue
                    seen = whole.get(tp)
                    if seen is None:  # the tail after the copy: onto the copy
                        for i in range(0, len(records), COPY_STEP):
                            chunk = records[i : i + COPY_STEP]
                            snapshot.apply(
                                tp.partition,
                                ((r.key, r.value, r.offset) for r in chunk),
                                caught_up=False,  # its age restarts once all of it is in
                            )
                            await give_way()
                    else:
                        seen.update(r.key for r in records)
                for tp in list(todo):
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
                await give_way()
            for ctp in ctps:
                self._loaded[TP(ctp.topic, ctp.partition)] = ends[ctp] - 1
            if snapshot is not None:
                for ctp, keys in whole.items():
                    present = ((k, data[k]) for k in keys if k in data)
                    for _ in snapshot.replacing(ctp.partition, present, ends[ctp] - 1):
                        await give_way()  # a million customers: not in one piece
                for ctp in ctps:  # the worker's writes to them are taken from now on
                    snapshot.caught_up(ctp.partition, ends[ctp], ends_read_ms)
                    snapshot.keep_current(ctp.partition)
        finally:
            await consumer.stop()
        took = time.perf_counter() - t0
        log.info(
            "loaded %d changelog records and %d from the local copy, of %d partition(s), in "
            "%.1f s (%d customers in memory)",
            n,
            from_copy,
            len(tps),
            took,
            len(data),
        )

    async def _take_copy(self, snapshot: LocalSnapshot, tp: ClientTP) -> int | None:
        """Fill memory with the local copy of ``tp``: how many customers, or None (and
        nothing left behind) when the copy cannot be read back."""
        data = self.data
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


def _apply(data: MutableMapping[Any, Any], records: Iterable[Any]) -> int:
    n = 0
    for r in records:
        if r.value is None:
            data.pop(r.key, None)
        else:
            data[r.key] = r.value
        n += 1
    return n
