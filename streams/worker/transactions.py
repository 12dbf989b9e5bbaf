"""Kafka transactions for exactly-once delivery: one transactional producer per input
partition index, held by the worker that owns that partition.

Why one per partition, and not one per worker (``docs/state.md`` has the whole
argument): aiokafka 0.14's ``send_offsets_to_transaction(offsets, group_id)`` sends
no consumer-group generation (KIP-447), so the broker cannot tell a zombie's offset
commit from the owner's. What fences a zombie is the transactional id: the new owner
of partition ``p`` initialises ``<app_id>-p<p>``, which bumps the id's epoch, aborts
whatever the old holder left open, and makes every later write of the old holder fail
with ``ProducerFenced``. The same stable id lets a restart after ``kill -9`` abort the
dangling transaction at once instead of waiting for ``transaction.timeout.ms``.

Everything a record of partition ``p`` causes (its state write-back, decisions, dead
letters, re-routed copies, progress markers) and ``p``'s input offsets go into ``p``'s
transaction. Partitions commit independently: a crash between two commits leaves each
partition either fully committed or fully aborted, and each recovers on its own.

A failed transaction is never retried here or swallowed: the worker's memory is ahead
of what Kafka holds, so it raises ``TransactionFailed`` and the worker stops; the
restart (or the partition's next owner) recovers from the committed state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    IllegalOperation,
    InvalidProducerEpoch,
    KafkaTimeoutError,
    ProducerFenced,
)
from aiokafka.errors import KafkaError as ClientError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as ClientTP

from streams.kafka import faust_internals as internals
from streams.settings import Settings
from streams.worker.checkpoint import WriteFailed

log = logging.getLogger("trigger_sanity.worker")

Offsets = dict[int, dict[ClientTP, OffsetAndMetadata]]

FAILURES = (ClientError, IllegalOperation, AssertionError)
"""What aiokafka raises when a transaction cannot go on: Kafka errors; IllegalOperation
and AssertionError (an invalid state transition) once a background error (a fence)
put the producer in its error state."""

CLOSE_WITHIN = 5.0
"""Seconds closing the transactional producers may take (the broker may be gone)."""
"""Input offsets to commit, per partition index (whose transaction carries them)."""


class TransactionFailed(WriteFailed):
    """A transaction could not commit (or its producer was fenced): stop and recover.
    ``restartable``: the cause is passing (the broker restarting, unreachable, a
    leader moving), so the worker restarts itself from the committed state; a fenced
    producer (another worker owns the partition) or a rejected record is not."""

    def __init__(self, message: str, restartable: bool = False) -> None:
        super().__init__(message)
        self.restartable = restartable


def passing(exc: BaseException | None) -> bool:
    """A cause that a restart from the committed state gets past: retriable broker
    errors, a client-side timeout, and a transaction the broker aborted for its
    timeout (its epoch bumped: InvalidProducerEpoch), e.g. across a broker restart."""
    return bool(getattr(exc, "retriable", False)) or isinstance(
        exc, KafkaTimeoutError | InvalidProducerEpoch | TimeoutError
    )


@dataclass(slots=True)
class TransactionStats:
    """What ``/metrics``, ``/stats`` and the dashboard show of transactions."""

    committed: int = 0
    aborted: int = 0
    fenced: int = 0
    open: int = 0
    rounds: int = 0  # commit rounds: every partition's transaction ended together
    seconds_total: float = 0.0  # summed commit round durations (send offsets + end txn)
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def as_dict(self) -> dict[str, Any]:
        recent = sorted(self.recent_ms)
        p99 = recent[min(len(recent) - 1, int(len(recent) * 0.99))] if recent else None
        return {
            "committed": self.committed,
            "aborted": self.aborted,
            "fenced": self.fenced,
            "open": self.open,
            "rounds": self.rounds,
            "seconds_total": round(self.seconds_total, 6),
            "commit_ms_p99": None if p99 is None else round(p99, 1),
        }


def transactional_id(app_id: str, partition: int) -> str:
    return f"{app_id}-p{partition}"


class PartitionTransactions:
    """The transactional producers of the partitions this worker owns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group_id = settings.app_id
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.open: set[int] = set()  # partitions with a transaction begun, not yet ended
        self.written: set[int] = set()  # ... that carry a write: what the next commit ends
        # the writes of each open transaction: a record the broker rejected fails only
        # its own future (aiokafka commits the rest anyway), so each commit checks them
        self.sent: dict[int, list[asyncio.Future[Any]]] = {}
        self.stats = TransactionStats()

    def _producer(self, partition: int) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            transactional_id=transactional_id(s.app_id, partition),
            transaction_timeout_ms=int(s.effective_transaction_timeout * 1000),
            acks="all",
            enable_idempotence=True,
            linger_ms=s.linger_ms,
            max_batch_size=512 * 1024,
            **s.kafka_client_kwargs(),
        )

    # ------------------------------------------------------------ ownership

    async def claim(self, partitions: Iterable[int]) -> None:
        """Partitions assigned to this worker: initialise their transactional ids before
        their changelog is read. That aborts (or completes) whatever a previous holder
        left open, so the changelog's last stable offset and the committed input offsets
        read next are final, and fences the previous holder if it is still alive."""
        todo = sorted(set(partitions) - self.producers.keys())
        if not todo:
            return
        t0 = time.perf_counter()
        made = {p: self._producer(p) for p in todo}
        results = await asyncio.gather(
            *(self._start(p, prod) for p, prod in made.items()), return_exceptions=True
        )
        failed = [
            (p, r) for p, r in zip(made, results, strict=True) if isinstance(r, BaseException)
        ]
        for p, prod in made.items():
            if all(p != q for q, _ in failed):
                self.producers[p] = prod
        if failed:
            for p, _ in failed:
                await _quietly_stop(made[p])
            p, exc = failed[0]
            raise TransactionFailed(
                f"initialising the transactional id {transactional_id(self.group_id, p)} "
                f"failed: {type(exc).__name__}: {exc}",
                restartable=passing(exc),
            ) from exc
        log.info(
            "transactional ids of partitions %s initialised in %.0f ms (any transaction a "
            "previous holder left open is aborted)",
            todo,
            (time.perf_counter() - t0) * 1000,
        )

    async def _start(self, partition: int, producer: AIOKafkaProducer) -> None:
        await producer.start()
        # waits for InitProducerId: the fencing happens here, not at the first send
        await producer.begin_transaction()
        self.open.add(partition)

    async def close(self) -> None:
        """Give up every transactional id (partitions move, or the worker stops). An
        open transaction is not aborted here: the next holder's claim aborts it, and
        an abort waits for in-flight writes, which with the broker gone is for ever.
        Bounded for the same reason."""
        producers, self.producers = self.producers, {}
        left = sum(1 for p in self.written)
        self.open.clear()
        self.written.clear()
        self.sent.clear()
        self.stats.open = 0
        if left:
            log.info("%d open transaction(s) left to the next holder of their ids", left)
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                await asyncio.gather(*(_quietly_stop(p) for p in producers.values()))
        except TimeoutError:
            log.warning("transactional producers not closed within %.0f s", CLOSE_WITHIN)

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self.producers)

    # ------------------------------------------------------------ writes

    async def send(
        self,
        partition: int,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        to: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """A write into ``partition``'s open transaction (begun if none is)."""
        prod = self.producers.get(partition)
        if prod is None:
            raise TransactionFailed(
                f"a write for partition {partition}, which this worker does not own "
                f"(owned: {sorted(self.producers)})"
            )
        try:
            if partition not in self.open:
                await prod.begin_transaction()
                self.open.add(partition)
            self.written.add(partition)
            sent: asyncio.Future[Any] = await prod.send(
                topic, value, key=key, partition=to, timestamp_ms=timestamp_ms, headers=headers
            )
        except FAILURES as exc:
            raise self._failed(partition, internals.transaction_error(prod) or exc) from exc
        self.sent.setdefault(partition, []).append(sent)
        return sent

    async def commit(self, offsets: Offsets) -> set[int]:
        """Commit every open transaction, each with its partition's input offsets, all at
        once. Returns the partitions committed. Raises ``TransactionFailed`` if any
        failed (after every other has ended: which committed is then known)."""
        todo = sorted(self.written | {p for p, o in offsets.items() if o})
        if not todo:
            return set()
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(self._commit_one(p, offsets.get(p)) for p in todo), return_exceptions=True
        )
        took = time.perf_counter() - t0
        done = {p for p, r in zip(todo, results, strict=True) if not isinstance(r, BaseException)}
        self.stats.committed += len(done)
        self.stats.rounds += 1
        self.stats.seconds_total += took
        self.stats.recent_ms.append(took * 1000)
        self.stats.open = len(self.written)
        for p, r in zip(todo, results, strict=True):
            if isinstance(r, BaseException):
                if isinstance(r, FAILURES):
                    prod = self.producers.get(p)
                    cause = (internals.transaction_error(prod) if prod else None) or r
                    raise self._failed(p, cause) from r
                if isinstance(r, TransactionFailed):
                    self.stats.aborted += 1
                raise r
        return done

    async def _commit_one(
        self, partition: int, offsets: dict[ClientTP, OffsetAndMetadata] | None
    ) -> None:
        prod = self.producers.get(partition)
        if prod is None:
            raise TransactionFailed(f"offsets of partition {partition}, not owned here")
        if partition not in self.open:
            await prod.begin_transaction()
            self.open.add(partition)
        sent = self.sent.pop(partition, [])
        if sent:
            await asyncio.wait(sent)
            for w in sent:
                if w.cancelled() or w.exception() is not None:
                    exc = w.exception() if not w.cancelled() else None
                    raise TransactionFailed(
                        f"a write of partition {partition}'s transaction was rejected "
                        f"({type(exc).__name__}: {exc}); not committed",
                        restartable=passing(exc),
                    ) from exc
        if offsets:
            await prod.send_offsets_to_transaction(offsets, self.group_id)
        await prod.commit_transaction()
        self.open.discard(partition)
        self.written.discard(partition)

    def _failed(self, partition: int, exc: BaseException) -> TransactionFailed:
        if isinstance(exc, ProducerFenced) or "fenced" in type(exc).__name__.lower():
            self.stats.fenced += 1
            return TransactionFailed(
                f"the transactional id {transactional_id(self.group_id, partition)} was "
                "fenced: another worker owns partition "
                f"{partition} now (this one was paused past the session timeout?); "
                "nothing this worker writes for it can become visible"
            )
        self.stats.aborted += 1
        return TransactionFailed(
            f"the transaction of partition {partition} failed: {type(exc).__name__}: {exc}",
            restartable=passing(exc),
        )


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except ClientError as exc:  # closing a producer whose broker is gone: logged, not raised
        log.warning("closing a transactional producer failed: %r", exc)
