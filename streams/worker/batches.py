"""Fetched batches through the processor: each record its own unit of work, then once
per partition the batch touched, what stream time allows.

The drain loop (``streams.kafka.batch_consumer``) hands over each fetch with the
consumer generation it was fetched in; a batch that a rebalance overtook is dropped
(faust's seek to the committed offsets reads it again), and nothing is handled once
the worker stops or a write failed. One batch at a time (``handling``): the other
pieces that change state (idle checks, sweeps, the hand-over on a rebalance) take the
same lock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiokafka.errors import KafkaError as ClientError

from streams.core.clock import NEVER
from streams.core.engine import Engine
from streams.kafka.batch_consumer import BatchConsumer
from streams.processing.processor import GateFailed, Processor
from streams.processing.records import OutRecord, source_partition
from streams.processing.watermarks import Watermarks
from streams.settings import Settings
from streams.worker.app import WorkerApp, now_ms
from streams.worker.checkpoint import Checkpoints, WriteFailed, frontier_meta
from streams.worker.delivery import Delivery
from streams.worker.fetches import ConsumerFetches
from streams.worker.ownership import Ownership
from streams.worker.table_store import TableStore

log = logging.getLogger("trigger_sanity.worker")


class Batches:
    def __init__(
        self,
        settings: Settings,
        app: WorkerApp,
        processor: Processor,
        watermarks: Watermarks,
        store: TableStore,
        checkpoints: Checkpoints,
        delivery: Delivery,
        ownership: Ownership,
        fetches: ConsumerFetches,
    ) -> None:
        self.settings = settings
        self.app = app
        self.processor = processor
        self.engine: Engine = processor.engine
        self.watermarks = watermarks
        self.store = store
        self.checkpoints = checkpoints
        self.delivery = delivery
        self.ownership = ownership
        self.reroute = settings.reroute_topic
        self.role_of = processor.role_of
        self.handling = delivery.handling  # held while a batch of records is handled
        self.stopping = asyncio.Event()  # set when the app starts to stop
        self.halted = False  # a write failed: no record is handled any more
        self._never = asyncio.Event()  # never set: what must not go on waits to be cancelled
        self.fetches = fetches
        self.next_offset = fetches.next_offset

    async def on_batch(self, messages: list[Any], generation: int) -> None:
        """One fetched batch, from the drain loop, in chunks of ``batch_size`` records;
        the loop fetches no more until this returns."""
        size = self.settings.batch_size
        for start in range(0, len(messages), size):
            if self.stopping.is_set() or self.halted:
                # Shutting down (tables are revoked next, so a state written now could be
                # lost while these records' offsets are committed), or a write failed:
                # leave the records unhandled, they are read again after the restart.
                # Wait here until the fetcher is stopped.
                await self._never.wait()
            async with self.handling:
                consumer = cast(BatchConsumer, self.app.consumer)
                if generation != self.app.consumer_generation_id or not consumer.flow_active:
                    # A rebalance overtook the batch: its partitions may be someone
                    # else's now. The seek to the committed offsets that follows every
                    # rebalance reads what is still ours again.
                    return
                try:
                    await self.handle_batch(messages[start : start + size])
                except (ClientError, WriteFailed) as exc:
                    # The producer refused a write of an applied record (its state stands):
                    # never commit past it. Stop; the restart reads it again.
                    self.halted = True
                    await self.delivery.crash(
                        exc if isinstance(exc, WriteFailed)
                        else WriteFailed(f"a write failed: {type(exc).__name__}: {exc}")
                    )  # fmt: skip
                    return
                except Exception as exc:
                    # Not a record's fault (those are dead-lettered inside): a bug in the
                    # batch's bookkeeping. The drain loop has moved past these offsets, so
                    # going on would skip them: stop, and let the restart read them again.
                    self.halted = True
                    log.exception("handling a batch failed; stopping")
                    await self.app.crash(exc)
                    return

    async def handle_batch(self, messages: list[Any]) -> None:
        """Records as they came, each its own unit of work; then, once per partition the
        batch touched, idleness, progress markers and the release of held candidates (a
        decision does not depend on when a release runs, only on what each stream
        delivered before passing the deadline)."""
        wall = now_ms()
        out: list[OutRecord] = []
        last: dict[tuple[str, int], int] = {}  # input and re-route partitions: last offset
        sources: set[int] = set()  # partitions whose forwarded records were read back here
        for msg in messages:
            tp = msg.tp
            last[tp] = msg.offset
            headers = dict(msg.headers) if msg.headers else None
            try:
                out += self.handle(msg.topic, msg.partition, msg.offset, msg.timestamp,
                                   msg.key, msg.value, headers, wall)  # fmt: skip
            except GateFailed:
                raise  # see GateFailed: the batch stops, and so does the worker
            except Exception as exc:
                # Nothing of the record was applied (see handle): log it with its
                # coordinates, count it and dead-letter it alone, then keep going.
                log.exception("failed on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                self.processor.counts["internal_error"] += 1
                err = f"internal error: {type(exc).__name__}: {exc}"
                dead = self.processor.dead_letter(msg.topic, msg.partition, msg.offset,
                                                  msg.key, msg.value, err, now_ms())  # fmt: skip
                out.append(dead)
            if msg.topic == self.reroute:
                src = source_partition(headers)
                if src is not None:
                    sources.add(src)
        out += self._after_batch(last, sources, wall)
        await self.delivery.write(out)
        for tp, offset in last.items():
            self.checkpoints.close((tp[0], tp[1]), offset + 1, self._commit_meta(tp[0], tp[1]))
        if self.store.dirty >= self.settings.max_dirty:
            await self.delivery.flush()

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float | None,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes] | None = None,
        wall: int | None = None,
    ) -> list[OutRecord]:
        """One record as one unit of work, without awaiting: its state changes reach the
        store only if all of it succeeds (else it raises and nothing was applied). Returns
        what to write. Releases follow in ``_after_batch``."""
        if wall is None:
            wall = now_ms()
        record_ms = int(timestamp * 1000) if timestamp else wall
        self.next_offset[(topic, partition)] = offset + 1
        self.store.begin()
        self.engine.begin()
        try:
            out = self.processor.on_record(
                topic, partition, offset, record_ms, key, value, wall, headers
            )
        except BaseException:
            self.store.rollback()
            self.engine.rollback()
            raise
        self.store.commit()
        self.engine.commit()
        return out

    def _after_batch(
        self, last: dict[tuple[str, int], int], sources: set[int], wall: int
    ) -> list[OutRecord]:
        """Idleness, markers and releases for the partitions a batch touched, as one unit
        of work. A failure here is a bug outside any one record's data: nothing of it is
        applied, the candidates stay held (the next batch or check tries again), and no
        record is blamed for it."""
        self.store.begin()
        self.engine.begin()
        try:
            out = self.watermarks.after_batch(
                last, self.fetches, sources, self.ownership.owned, wall
            )
        except Exception:
            self.store.rollback()
            self.engine.rollback()
            log.exception("releasing after a batch failed; the candidates stay held")
            self.processor.counts["internal_error"] += 1
            return []
        self.store.commit()
        self.engine.commit()
        return out

    def _commit_meta(self, topic: str, partition: int) -> str:
        """What a commit of this input stream carries: its frontier (re-route: nothing;
        a forwarded record's arrival frontier travels in its headers)."""
        if topic == self.reroute:
            return ""
        frontier = self.engine.clock(partition).frontier(self.role_of[topic])
        return frontier_meta(None if frontier == NEVER else frontier)
