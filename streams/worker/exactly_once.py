"""Exactly-once delivery (``TRIGGER_SANITY_GUARANTEE=exactly_once``, the default): every
write and the input offsets go out in Kafka transactions, one per owned partition and
commit cycle (``streams.worker.transactions``).

What changes against the at-least-once protocol (``streams.worker.delivery``):

- a decision is sent into its partition's open transaction as soon as it is made; it
  need not wait for its state to be durable, because both become visible together or
  not at all;
- a commit cycle, every ``commit_interval``, seals the open transactions under the
  handling lock (no record is handled half inside it): per partition it writes back
  the customers changed, records the cycle's generation as delivered (so recovery
  publishes none of those outbox entries again) and adds the input offsets with
  their frontiers. It commits them outside the lock: records are handled meanwhile,
  and what they write waits until the commit is done, then opens the next
  transactions (a producer takes no new transaction while one commits);
- the rocksdb:// local copy takes a write-back only once its transaction committed,
  and steps over the commit marker that follows it;
- any failure of a transaction (fenced, timed out, rejected) stops the worker: its
  memory is ahead of what Kafka holds, and the restart (or the partition's next owner)
  recovers from the last committed state, which readers of committed records alone
  have seen.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError as ClientError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as ClientTP
from kafka.errors import KafkaError

from streams.core.outbox import Outbox
from streams.kafka import faust_internals as internals
from streams.processing.records import OutRecord
from streams.settings import Settings
from streams.worker.app import DurableTable, WorkerApp
from streams.worker.checkpoint import Checkpoints, WriteFailed
from streams.worker.delivery import Delivery
from streams.worker.ownership import Ownership
from streams.worker.table_store import TableStore
from streams.worker.transactions import (
    Offsets,
    PartitionTransactions,
    TransactionFailed,
    passing,
)

log = logging.getLogger("trigger_sanity.worker")

T = TypeVar("T")


class TransactionalDelivery(Delivery):
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
        super().__init__(settings, app, table, store, checkpoints, outbox, ownership)
        self.txns = PartitionTransactions(settings)
        # changelog writes per partition waiting for their transaction: the local copy
        # may hold only what committed
        self._uncommitted: dict[int, list[tuple[bytes, bytes | None, Any]]] = {}
        # a cycle failed: memory is ahead of Kafka, nothing may be committed any more
        self.broken: BaseException | None = None
        self._cycle_lock = asyncio.Lock()  # one cycle at a time, sealed to committed
        self._committing = False  # sealed transactions are being committed
        self._deferred: list[OutRecord] = []  # written meanwhile: sent once they are
        self._closed = False  # the last cycle ran (stop, hand-over): no more writes
        # per changelog partition, its end offset after this worker's last commit
        self._changelog_ends: dict[int, int] = {}
        self._delivered_sent: dict[int, Any] = {}  # this cycle's delivered record, sent

    # ------------------------------------------------------------ writes

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
        try:
            return await self.txns.send(origin, topic, key, value, to, timestamp_ms, headers)
        except BaseException as exc:
            # Whatever was not sent is lost to this transaction: nothing may commit now
            # (the caller stops the worker).
            self.broken = self.broken or exc
            raise

    def _changelog_sent(self, key: bytes, value: bytes | None, sent: Any, partition: int) -> None:
        if self.table.memory.snapshot is not None:
            self._uncommitted.setdefault(partition, []).append((key, value, sent))

    async def write(self, records: list[OutRecord]) -> None:
        """Everything a batch caused goes into the open transactions now, decisions
        included (or, while a commit is in flight, right after it); the batch's offsets
        join them at the next commit cycle."""
        if self._closed:
            # After the last cycle (a timer that fired during the stop): these belong to
            # no transaction. Nothing of theirs is committed, neither the state that
            # made them nor an offset: the restart makes them again.
            return
        if self._committing:
            self._deferred.extend(records)
            return
        await self._write_now(records)

    async def _write_now(self, records: list[OutRecord]) -> None:
        for r in records:
            await self._send_record(r)

    # ------------------------------------------------------------ ownership

    async def claim(self, partitions: list[int]) -> None:
        await self.txns.claim(partitions)

    def changelog_end(self, partition: int) -> int | None:
        """Where the changelog partition ended after this worker's last commit to it
        (None: no commit since it was loaded). If it ends elsewhere now, someone else
        wrote it meanwhile (this worker lost the partition for a while)."""
        return self._changelog_ends.get(partition)

    # ------------------------------------------------------------ the commit cycle

    async def publish(self, handover: bool = False) -> None:
        """Nothing waits to be published: decisions are in their transactions."""

    async def publisher(self) -> None:
        """No publish cycles: the commit cycles make decisions visible."""

    async def flush(self) -> None:
        """While transactions are being committed, write-backs wait for the next cycle
        (the producers take no new writes until their commit is done)."""
        if not self._committing:
            await super().flush()

    async def commit(self) -> None:
        """One commit cycle: sealed under the handling lock, committed outside it, so
        that records are handled meanwhile (their writes wait in ``_deferred`` and go
        into the next transactions as soon as the commit is done)."""
        if not self.ownership.active or self._closed:
            return
        async with self._cycle_lock:
            if self._closed:
                return
            async with self.handling:
                sealed = await self._guarded(self._seal())
            await self._guarded(self._finish(*sealed))

    async def _whole_cycle(self, handling: asyncio.Lock) -> None:
        """A cycle with nothing handled until it is committed (a hand-over, the stop)."""
        async with self._cycle_lock:
            async with handling:
                sealed = await self._guarded(self._seal())
                await self._guarded(self._finish(*sealed))

    async def _guarded(self, step: Awaitable[T]) -> T:
        """After a failed cycle none runs again: records handled since could be committed
        past writes that were lost with the failed transaction."""
        if self.broken is not None:
            if inspect.iscoroutine(step):
                step.close()
            raise WriteFailed(f"an earlier transaction failed: {self.broken}")
        try:
            return await step
        except BaseException as exc:
            self.broken = exc
            self._committing = False
            raise

    async def _seal(self) -> tuple[int, dict[tuple[str, int], tuple[int, str]], Offsets]:
        """Everything up to now into the open transactions: outbox entries a recovery
        left, the write-backs, each partition's delivered record and input offsets."""
        gen = self.outbox.next_cycle()
        again, self.pending = self.pending, []
        for r in again:  # a recovery's outbox entries not known delivered
            await self._send_record(r)
        if self.before_seal is not None:
            # records whose content is only final now (campaign counts): nothing written
            # in a transaction is visible before its commit, so one per cycle does
            for r in self.before_seal():
                await self._send_record(r)
        await self.flush()
        handled = self.checkpoints.take_handled()
        offsets: Offsets = {}
        for (topic, p), (offset, meta) in handled.items():
            offsets.setdefault(p, {})[ClientTP(topic, p)] = OffsetAndMetadata(offset, meta)
        stamp = str(gen).encode()
        data = self.store.data
        for p in sorted(self.txns.written | offsets.keys()):
            key = self._delivered_keys[p]
            data[key] = stamp
            sent = await self._send(p, self.changelog, key, stamp, p)
            self._changelog_sent(key, stamp, sent, p)
            self._delivered_sent[p] = sent
        self._committing = True
        return gen, handled, offsets

    async def _finish(
        self, gen: int, handled: dict[tuple[str, int], tuple[int, str]], offsets: Offsets
    ) -> None:
        """Commit what ``_seal`` put in, then send what was written meanwhile."""
        try:
            done = await self.txns.commit(offsets)
            if done:
                self.outbox.delivered_up_to(gen)
                self.store.drop_delivered_outboxes(self.outbox.delivered)
                self.checkpoints.committed(handled)
                internals.note_committed(self.app.consumer, handled, time.monotonic())
                self._copy_committed(done)
                for p in done:
                    # the delivered record is the transaction's last in its changelog
                    # partition, the commit marker right after it
                    sent = self._delivered_sent.pop(p, None)
                    if sent is not None:
                        self._changelog_ends[p] = sent.result().offset + 2
            # In the order written; writes made while these go out join the list.
            while self._deferred:
                batch, self._deferred = self._deferred, []
                await self._write_now(batch)
        finally:
            self._committing = False

    def _copy_committed(self, done: set[int]) -> None:
        snapshot = self.table.memory.snapshot
        if snapshot is None:
            return
        futures: list[Any] = []
        for p in done:
            writes = self._uncommitted.pop(p, None)
            if not writes:
                continue
            for key, value, sent in writes:
                snapshot.on_sent(key, value, sent, p)
                futures.append(sent)
            # the commit marker follows the transaction's last record in the partition
            # (only this worker's producer writes it): the copy steps over it
            last = max(sent.result().offset for _, _, sent in writes)
            snapshot.on_marker(p, last + 1)
        if futures:
            self.copy_when_acknowledged(snapshot, futures)

    async def committer(self) -> None:
        await self._cycles(self.settings.commit_interval, self.commit)

    # ------------------------------------------------------------ endings

    async def crash(self, exc: WriteFailed) -> None:
        """A write failed outside a commit cycle: nothing may be committed after it."""
        self.broken = self.broken or exc
        await super().crash(exc)

    async def hand_over(self, handling: asyncio.Lock) -> None:
        """Partitions are about to move: commit what is open, then give up every
        transactional id (the next assignment claims them again). A transaction that
        cannot commit in time is left open for the next owner, whose claim aborts it;
        this worker's memory is then ahead of Kafka, so it stops and recovers."""
        try:
            async with asyncio.timeout(self.settings.session_timeout / 3):
                await self._whole_cycle(handling)
        except (TimeoutError, WriteFailed, ClientError, KafkaError) as exc:
            log.error("handing over: the last transaction did not commit (%r)", exc)
            self.broken = self.broken or exc
            await self.crash(WriteFailed(f"the hand-over's transaction failed: {exc!r}"))
        await self.txns.close()

    async def final(self, handling: asyncio.Lock) -> None:
        """On a clean stop: the last transaction committed, the ids given up. After a
        failure none is committed: the restart reads those records again."""
        try:
            if self.broken is None:
                async with asyncio.timeout(self.settings.session_timeout / 3):
                    await self._whole_cycle(handling)
        except (ClientError, KafkaError, TimeoutError, WriteFailed) as exc:
            log.warning(
                "could not commit the last transaction before stopping (%s: %s); its "
                "records are read and decided again after the restart",
                type(exc).__name__,
                exc,
            )
        finally:
            self._closed = True
            await self.txns.close()

    def restart_reason(self) -> BaseException | None:
        """Why the worker stopped, when a restart from the committed state gets past
        it (a broker restart, a timeout); None otherwise (fenced, a rejected record, a
        bug), when it stays stopped for its supervisor."""
        b = self.broken
        if isinstance(b, TransactionFailed):
            return b if b.restartable else None
        return b if passing(b) else None

    def transaction_stats(self) -> dict[str, Any]:
        return self.txns.stats.as_dict()
