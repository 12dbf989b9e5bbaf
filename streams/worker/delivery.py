"""Delivery: how a decision reaches Kafka without being lost, and when an input offset
may be committed. Every write the worker makes goes through here.

The promise is an order (see ``docs/state.md``): a decision is in its customer's
state (the outbox) before it is sent, that state is acknowledged by the broker before
the decision is published, and an input offset is committed only once every write
its record caused is acknowledged (``streams.worker.checkpoint``).

A publish cycle, the one place decisions go out (``publish``):

1. write back every customer changed since the last flush (``flush``): one changelog
   record each, the outboxes holding the pending decisions among them;
2. wait until every write made so far is acknowledged (``Checkpoints.durable``);
3. send the pending decisions and wait for their acknowledgements;
4. record the cycle's generation as delivered in each owned partition's table, so a
   recovery publishes only the outbox entries newer than it.

A crash before 2 completes loses no decision (it was never sent, its input is read
again); after it, recovery publishes the outbox entries newer than the delivered
generation again: byte-identical copies, never a different decision.

A commit cycle (``commit``):

1. write back what changed (as step 1 above);
2. take the offsets whose records' writes are all acknowledged, in read order;
3. commit them with their streams' frontiers as metadata, on faust's consumer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError as ClientError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as ClientTP
from kafka.errors import KafkaError

from streams.contract.partitioning import partition_for
from streams.core.outbox import Outbox
from streams.kafka import faust_internals as internals
from streams.processing.records import OutRecord
from streams.settings import Settings
from streams.worker.app import DurableTable, WorkerApp
from streams.worker.checkpoint import Checkpoints, WriteFailed
from streams.worker.loop import STEP_BUDGET, give_way
from streams.worker.ownership import Ownership
from streams.worker.snapshot import COPY_STEP, LocalSnapshot
from streams.worker.table_store import TableStore, delivered_key

log = logging.getLogger("trigger_sanity.worker")

PUBLISHED = frozenset({"send_queue", "suppressed", "late_evidence"})
"""Output roles that wait in the outbox until the state recording them is durable."""

Offsets = dict[tuple[str, int], tuple[int, str]]


class Delivery:
    def __init__(
        self,
        settings: Settings,
        app: WorkerApp,
        table: DurableTable,
        store: TableStore,
        checkpoints: Checkpoints,
        outbox: Outbox,
        ownership: Ownership,
    ) -> None:
        self.settings = settings
        self.app = app
        self.table = table
        self.store = store
        self.checkpoints = checkpoints
        self.outbox = outbox
        self.ownership = ownership
        # rows kept beside the customers (campaign replicas) written into the table just
        # before each write-back, so they go out with the state and offsets they belong to
        self.before_flush: Callable[[], object] | None = None
        # campaign counts (see Worker): exactly-once writes them into each commit cycle's
        # transactions; at-least-once after the flush that records them as sent
        self.before_seal: Callable[[], list[OutRecord]] | None = None
        topics = settings.topics
        self.reroute = settings.reroute_topic
        # Output topic names: records go straight to the producer (bytes already
        # rendered), not through faust's Topic.send and its per-record bookkeeping.
        self.out = {
            role: topics[role]
            for role in ("send_queue", "suppressed", "dead_letter", "late_evidence")
        }
        self.out["reroute"] = self.reroute
        self.changelog = table.changelog_topic.get_topic_name()
        self._delivered_keys = [
            delivered_key(p, settings.partitions).encode() for p in range(settings.partitions)
        ]
        # decisions whose state is written but maybe not yet durable: published by publish()
        self.pending: list[OutRecord] = []
        # One batch of records, or one transaction, at a time: the batches, the idle
        # checks, the sweeps and the hand-over take it too.
        self.handling = asyncio.Lock()
        self._publishing = asyncio.Lock()  # one publish cycle at a time
        self._publish_due = asyncio.Event()  # decisions were queued: a cycle may start
        self._flushing = asyncio.Lock()  # one write-back flush at a time
        self._copying: asyncio.Future[None] | None = None  # into the rocksdb:// local copy

    # ------------------------------------------------------------ what a batch writes

    async def write(self, records: list[OutRecord]) -> None:
        """Decisions wait for ``publish`` (their state must be durable first); everything
        else (re-routed copies, dead letters, markers) is sent now, and the record in
        hand's offset waits for it."""
        # Queue the decisions before the first await below: a publish cycle must never
        # see half of them.
        queued = len(self.pending)
        for r in records:
            if r.role in PUBLISHED:
                self.pending.append(r)
        if len(self.pending) > queued:
            self._publish_due.set()
        for r in records:
            if r.role in PUBLISHED:
                continue
            # the record's offset waits for these too: a forwarded copy or a dead letter
            # must not be lost with the input offset committed
            self.checkpoints.track(await self._send_record(r))

    async def _send_record(self, r: OutRecord) -> asyncio.Future[Any]:
        """One record to its topic (re-routed copies to their partition, with their
        timestamp and headers), as part of the partition it belongs to."""
        if r.role == "reroute":
            return await self._send(
                self._origin(r), self.reroute, r.key, r.value, r.partition, r.timestamp_ms,
                list(r.headers),
            )  # fmt: skip
        return await self._send(self._origin(r), self.out[r.role], r.key, r.value)

    async def _send(
        self,
        origin: int,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        to: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """One write; ``origin`` is the partition index it belongs to (the transaction
        that carries it, with exactly-once; unused here)."""
        ts = None if timestamp_ms is None else timestamp_ms / 1000
        sent: asyncio.Future[Any] = await self.app.producer.send(topic, key, value, to, ts, headers)  # type: ignore[assignment]
        return sent

    def _origin(self, r: OutRecord) -> int:
        """The partition index a record belongs to: where its reading happened, else
        (decisions, a failed candidate's dead letter) its customer's partition."""
        if r.origin is not None:
            return r.origin
        return self.ownership.partition_of((r.key or b"").decode("utf-8"))

    def _changelog_sent(self, key: bytes, value: bytes | None, sent: Any, partition: int) -> None:
        """A write-back was sent: into the rocksdb:// local copy once acknowledged."""
        snapshot = self.table.memory.snapshot
        if snapshot is not None:
            snapshot.on_sent(key, value, sent, partition)

    async def claim(self, partitions: list[int]) -> None:
        """Partitions assigned, before their changelog is read (transactions claim their
        ids here; nothing to do without)."""

    def restart_reason(self) -> BaseException | None:
        """Without transactions the worker rides out broker outages: never."""
        return None

    def changelog_end(self, partition: int) -> int | None:
        """Only known with transactions (see ``TransactionalDelivery``)."""
        return None

    def transaction_stats(self) -> dict[str, Any] | None:
        return None

    def recovered(self, again: list[tuple[str, bytes, bytes]], delivered: dict[int, int]) -> None:
        """After a recovery: the outbox entries not known delivered are what is pending,
        and new entries must be newer than anything any earlier run called delivered."""
        self.outbox.resume(max(delivered.values(), default=-1), delivered.values())
        self.pending = [OutRecord(role, key, value) for role, key, value in again]
        if again:
            log.info("re-publishing %d decision(s) not known delivered before", len(again))

    def delivered_of(self, partition: int) -> int:
        """The newest generation recorded delivered in a partition's table (-1: none)."""
        raw = self.table.get(self._delivered_keys[partition])
        return int(raw) if raw is not None else -1

    def drop_partitions(self, gone: set[int]) -> None:
        """Their outboxes go with the partitions: the new owner publishes them."""
        part = self.ownership.partition_of
        self.pending = [r for r in self.pending if part((r.key or b"").decode()) not in gone]

    # ------------------------------------------------------------ write-back

    async def flush(self) -> None:
        """Write back every customer changed since the last flush: one changelog record
        each, sent without waiting; the records read meanwhile wait for them (their
        offsets) through the checkpoint ledger. One flush at a time: two overlapping
        ones could put an older value of a customer last in the changelog."""
        async with self._flushing:
            if self.before_flush is not None:
                self.before_flush()
            dirty = self.store.take_dirty()
            epoch = self.checkpoints.flush_begins()
            if not dirty:
                Checkpoints.flushed(epoch, [])
                return
            send = self._send
            topic = self.changelog
            partitions = self.settings.partitions
            writes: list[Any] = []
            perf = time.perf_counter
            snapshot = self.table.memory.snapshot
            copy = self._changelog_sent
            try:
                deadline = perf() + STEP_BUDGET
                for key, value in dirty.items():
                    p = partition_for(key.decode("utf-8"), partitions)
                    writes.append(await send(p, topic, key, value, p))
                    copy(key, value, writes[-1], p)
                    if perf() >= deadline:
                        # a sweep can leave a million customers to write: not in one piece
                        await give_way()
                        deadline = perf() + STEP_BUDGET
            except BaseException as exc:
                # Not all sent, and the rest is out of the dirty set: whoever waits for this
                # flush must never commit past it; the worker stops and recovers from Kafka.
                failed = self.app.loop.create_future()
                failed.set_exception(
                    exc if isinstance(exc, Exception) else WriteFailed("flush cancelled")
                )
                writes.append(failed)
                Checkpoints.flushed(epoch, writes)
                if isinstance(exc, ClientError):
                    raise WriteFailed(f"state write-back failed: {exc!r}") from exc
                raise
            Checkpoints.flushed(epoch, writes)
            if snapshot is not None:
                self.copy_when_acknowledged(snapshot, writes)

    def copy_when_acknowledged(self, snapshot: LocalSnapshot, writes: list[Any]) -> None:
        """Once the flush is acknowledged, its writes (and earlier ones) go into the
        rocksdb:// local copy, a step at a time (see streams.worker.snapshot)."""

        def all_done(_: asyncio.Future[Any]) -> None:
            if snapshot.closed:
                return
            if self._copying is None or self._copying.done():
                self._copying = asyncio.ensure_future(self._copy_acked(snapshot))

        asyncio.gather(*writes, return_exceptions=True).add_done_callback(all_done)

    async def _copy_acked(self, snapshot: LocalSnapshot) -> None:
        while snapshot.write_acked(limit=COPY_STEP):
            await give_way()

    # ------------------------------------------------------------ publish

    async def publish(self, handover: bool = False) -> None:
        """One publish cycle (the steps are in this module's docstring).

        ``handover``: partitions are about to move or the worker stops; the cycle runs
        even with nothing pending, so that what earlier cycles published (one may have
        been cut short by the rebalance) is recorded while the partitions are ours."""
        async with self._publishing:
            if not handover and (not self.pending or not self.ownership.active):
                return
            await self._publish_cycle(handover)

    async def _publish_cycle(self, handover: bool) -> None:
        epoch = self.ownership.epoch
        batch, self.pending = self.pending, []
        gen = self.outbox.next_cycle()
        try:
            await self.flush()  # 1. write back the outboxes
            await self.checkpoints.durable()  # 2. every write so far acknowledged
            send = self._send  # 3. the decisions, acknowledged
            # no transaction to attribute them to (-1): outbox entries, state already durable
            sent = [await send(-1, self.out[r.role], r.key, r.value) for r in batch]
            await asyncio.gather(*sent)
        except ClientError as exc:
            # Nothing is recorded as delivered: they stay pending (and in the outboxes).
            log.warning("publishing %d decision(s) failed (%s); will retry", len(batch), exc)
            self.pending[:0] = batch
            return
        except BaseException:
            self.pending[:0] = batch
            raise
        if not handover and not self.ownership.still(epoch):
            # A rebalance came in between: the partitions' next owner (maybe this worker,
            # recovered) decides what was delivered; an old generation must not count.
            return
        self.outbox.delivered_up_to(gen)  # 4. recorded delivered, per owned partition
        self.store.drop_delivered_outboxes(self.outbox.delivered)
        for p in sorted(self.ownership.owned):
            # faust sends this changelog write at once (its producer buffer), not with
            # the next flush: until it is in, a crash publishes these decisions again
            self.table[self._delivered_keys[p]] = str(gen).encode()

    # ------------------------------------------------------------ commit

    async def commit(self) -> None:
        """One commit cycle (the steps are in this module's docstring)."""
        if not self.ownership.active:
            return
        # campaign counts: taken now, so that the flush saves the promise they tell and
        # the candidates they carry as sent; written only once that flush is durable (a
        # crash in between leaves them to the restore, which sends them again)
        counts = self.before_seal() if self.before_seal is not None else []
        await self.flush()  # 1.
        if counts:
            await self.checkpoints.durable()
            await self.write(counts)
        offsets = self.checkpoints.committable()  # 2.
        if not offsets:
            return
        epoch = self.ownership.epoch
        try:  # 3.
            await internals.on_consumer_thread(self.app.consumer, self._commit_on_thread, offsets)
        except ClientError as exc:
            # Not committed: those records are read again later and skipped as applied.
            log.warning("committing offsets failed (%s); will retry", exc)
            return
        if epoch == self.ownership.epoch:
            self.checkpoints.committed(offsets)

    async def _commit_on_thread(self, offsets: Offsets) -> None:
        """On faust's consumer thread, which owns the aiokafka consumer: faust's own
        commit cannot carry metadata."""
        consumer = internals.client_consumer(self.app.consumer)
        assigned = consumer.assignment()
        todo = {
            ClientTP(t, p): OffsetAndMetadata(offset, meta)
            for (t, p), (offset, meta) in offsets.items()
            if ClientTP(t, p) in assigned
        }
        if todo:
            await consumer.commit(todo)
            internals.note_committed(
                self.app.consumer, ((tp.topic, tp.partition) for tp in todo), time.monotonic()
            )

    # ------------------------------------------------------------ loops and endings

    async def publisher(self) -> None:
        """Publish cycles for as long as the app runs: one starts as soon as decisions
        are queued and the previous cycle is done (a cycle waits for the broker twice,
        so decisions queued meanwhile go out together in the next), or after
        ``publish_interval`` without one (decisions a failed cycle or a recovery left
        pending). Polling on a fixed interval instead cost a decision half an interval
        plus the cycle it missed."""
        await self._cycles(self.settings.publish_interval, self.publish, self._publish_due)

    async def committer(self) -> None:
        """Commit cycles, every ``commit_interval``."""
        await self._cycles(self.settings.commit_interval, self.commit)

    async def _cycles(
        self,
        interval: float,
        cycle: Callable[[], Awaitable[None]],
        wake: asyncio.Event | None = None,
    ) -> None:
        """``cycle`` every ``interval``, or as soon as ``wake`` is set (then at the latest
        ``interval`` after the previous one: the fallback when nothing sets it)."""
        while not self.app.should_stop:
            if wake is None:
                await asyncio.sleep(interval)  # pacing the cycles
            else:
                with contextlib.suppress(TimeoutError):  # the fallback cycle
                    async with asyncio.timeout(interval):
                        await wake.wait()
                wake.clear()
            try:
                await cycle()
            except WriteFailed as exc:
                await self.crash(exc)
                return

    async def crash(self, exc: WriteFailed) -> None:
        """A state or forward write was rejected: memory is ahead of Kafka. Stop (exit
        non-zero); a restart recovers from what Kafka holds and reads the records again."""
        log.error("stopping: %s", exc)
        await self.app.crash(exc)

    async def hand_over(self, handling: asyncio.Lock) -> None:
        """Partitions are about to move: publish what is pending and record it, and let
        every write land first (else the next owner would publish them again, and miss
        late state). Bounded: a rebalance must not wait for a broker that is gone."""
        try:
            async with asyncio.timeout(self.settings.session_timeout / 3):
                async with handling:
                    await self.publish(handover=True)
                    counts = self.before_seal() if self.before_seal is not None else []
                    await self.flush()
                await self.checkpoints.durable()
                await self.write(counts)
        except (TimeoutError, WriteFailed, ClientError, KafkaError) as exc:
            log.warning("handing over before every write was acknowledged: %r", exc)

    async def final(self, handling: asyncio.Lock) -> None:
        """On a clean stop, with no more records handled: the last decisions out, their
        delivery recorded and flushed, the offsets committed."""
        try:
            # Bounded: with the broker gone a flush waits for ever, and a stopping worker
            # must be gone before its partitions are given to another one.
            async with asyncio.timeout(self.settings.session_timeout / 3):
                async with handling:  # the batch in hand is finished first
                    pass
                if self.pending:
                    log.info("publishing %d decision(s) before stopping", len(self.pending))
                await self.publish(handover=True)
                await self.flush()
                await self.checkpoints.durable()
                await self.commit()
        except (ClientError, KafkaError, TimeoutError, WriteFailed) as exc:
            # the outboxes keep the decisions, and the records are read again
            log.warning(
                "could not publish and commit before stopping (%s: %s); done on restart",
                type(exc).__name__,
                exc,
            )
