"""The periodic idle check: which input partitions are caught up (compared with their
end offsets, which only Kafka knows), markers as a heartbeat, and releases by wall
clock where everything is quiet (``Watermarks.on_idle_check`` decides; this module
asks Kafka and writes).

A partition not read since the start is compared with its committed offset, never
with what was fetched: fetched-but-unprocessed records must never look idle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka.errors import KafkaError as ClientError
from faust.types import TP

from streams.kafka.offsets import CommittedOffsets
from streams.processing.records import OutRecord
from streams.processing.watermarks import Watermarks
from streams.worker.app import WorkerApp, now_ms
from streams.worker.delivery import Delivery
from streams.worker.fetches import ConsumerFetches
from streams.worker.ownership import Ownership

log = logging.getLogger("trigger_sanity.worker")


class IdleCheck:
    def __init__(
        self,
        app: WorkerApp,
        inputs: frozenset[str],
        reroute: str,
        watermarks: Watermarks,
        delivery: Delivery,
        ownership: Ownership,
        offsets: CommittedOffsets,
        fetches: ConsumerFetches,
    ) -> None:
        self.app = app
        self.inputs = inputs
        self.reroute = reroute
        self.watermarks = watermarks
        self.delivery = delivery
        self.ownership = ownership
        self.offsets = offsets
        self.fetches = fetches
        self.committed = fetches.committed
        # called when a check finds every owned input partition read to its end
        self.caught_up: Callable[[], None] | None = None

    async def tick(self) -> None:
        try:
            await self._tick()
        except ClientError as exc:
            # The broker is unreachable: nothing is idle and nothing is released by wall
            # clock until it answers again (a timer that raised would stop the worker).
            log.warning("idle check skipped: %s: %s", type(exc).__name__, exc)

    async def _tick(self) -> None:
        """Every await (broker round trips) happens first; the decisions are then made
        without yielding, and only if no rebalance started meanwhile, for partitions
        this worker still owns: a check that straddles a rebalance must not decide
        candidates that already belong to another worker."""
        own = self.ownership
        if not own.active:
            return
        epoch = own.epoch
        assigned = self.app.consumer.assignment()
        tps = {tp for tp in assigned if tp.topic in self.inputs}
        if not tps:
            return
        # Heartbeat first: the end-offset look-ups below wait for the consumer thread.
        # Under the handling lock, as every write: with transactions, a write must not
        # land in a partition's transaction while a commit cycle is ending it.
        async with self.delivery.handling:
            beat = self.watermarks.heartbeat(sorted({tp.partition for tp in tps} & own.owned))
            await self.delivery.write(beat)
        reroute_tps = self.watermarks.unread_reroute(
            tp for tp in assigned if tp.topic == self.reroute
        )
        ends: dict[tuple[str, int], int] = dict(
            await self.app.consumer.highwaters(*tps, *reroute_tps)  # type: ignore[arg-type]
        )
        next_offset = self.fetches.next_offset
        unseen = [
            TP(*tp)
            for tp in tps | reroute_tps
            if tp not in next_offset and tp not in self.committed
        ]
        starts = await self._start_offsets(unseen) if unseen else {}
        if not own.still(epoch):
            return
        self.committed.update(starts)

        def done(tp: tuple[str, int]) -> int | None:
            return next_offset.get(tp, self.committed.get(tp))

        async with self.delivery.handling:
            if not own.still(epoch):
                return
            out: list[OutRecord] = self.watermarks.on_idle_check(
                ends, done, self.fetches.fresh, tps, reroute_tps, own.owned, now_ms()
            )
            await self.delivery.write(out)
        if self.caught_up is not None and all(
            (at := done(tp)) is not None and at >= ends.get(tp, at + 1)
            for tp in tps
            if tp.partition in own.owned
        ):
            self.caught_up()

    async def _start_offsets(self, tps: list[TP]) -> dict[tuple[str, int], int]:
        """Where processing of partitions not read since start begins: committed, else
        earliest."""
        committed = await asyncio.to_thread(self.offsets.read)
        out: dict[tuple[str, int], int] = {}
        missing = []
        for tp in tps:
            off = committed.get((tp.topic, tp.partition))
            if off is None:
                missing.append(tp)
            else:
                out[tp] = off
        if missing:
            earliest = await self.app.consumer.earliest_offsets(*missing)
            out.update({tp: off for tp, off in earliest.items() if off is not None})
        return out
