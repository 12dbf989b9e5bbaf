"""Work over every customer (the restore after a rebalance, the periodic sweep) in steps
that keep the event loop responsive, and the probe that measures how well they do.

With a million customers a walk takes seconds; records, heartbeats and the web page
must not wait for it. A walk runs ``STEP_BUDGET`` of work at a time and gives the
loop back in between; a sweep step also waits for the batch in hand (a sweep changes
state outside any record: the next record's offset waits for that write too). The
longest step and the longest stall per phase go to ``/stats/`` (``loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from streams.core.engine import Engine
from streams.settings import Settings
from streams.worker.heap import Heap
from streams.worker.loop import STEP_BUDGET, give_way
from streams.worker.ownership import Ownership
from streams.worker.table_store import TableStore

log = logging.getLogger("trigger_sanity.worker")

TRIM_AFTER_RECORDS = 100_000
"""A burst worth giving memory back after, once caught up (a trim costs milliseconds)."""


class Maintenance:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: TableStore,
        ownership: Ownership,
        handling: asyncio.Lock,
        should_stop: Callable[[], bool],
        handled: Callable[[], int] = lambda: 0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.ownership = ownership
        self.handling = handling
        self.should_stop = should_stop
        self.handled = handled  # input records handled so far
        # what the worker is doing, for the stall probe: starting, restoring, running,
        # sweeping
        self.phase = "starting"
        self.loop_stats: dict[str, float] = {}
        self.heap = Heap()
        self._trimmed_at = 0  # records handled at the last trim

    async def in_steps(
        self,
        steps: Iterator[Any],
        name: str,
        lock: asyncio.Lock | None = None,
        still: Callable[[], bool] | None = None,
    ) -> bool:
        """Run ``steps`` to the end, giving the event loop back every ``STEP_BUDGET``; the
        longest step goes to ``/stats/`` (``longest_step_ms_<name>``, with the loop
        thread's own CPU time in it: the rest was waiting, for the GIL or for a core).
        Each step holds ``lock`` if given, and the walk stops (False) as soon as
        ``still()`` says it may not go on."""
        key = f"longest_step_ms_{name}"
        perf = time.perf_counter
        while True:
            async with lock if lock is not None else contextlib.nullcontext():
                if still is not None and not still():
                    return False
                t0, c0 = perf(), time.thread_time()
                deadline = t0 + STEP_BUDGET
                done = True
                for _ in steps:
                    if perf() >= deadline:
                        done = False
                        break
                took = (perf() - t0) * 1000
                if took > self.loop_stats.get(key, 0.0):
                    self.loop_stats[key] = round(took, 1)
                    cpu = (time.thread_time() - c0) * 1000
                    self.loop_stats[f"longest_step_cpu_ms_{name}"] = round(cpu, 1)
            if done:
                return True
            await give_way()

    async def sweeper(self) -> None:
        """Sweeps, every ``sweep_interval``."""
        while not self.should_stop():
            await asyncio.sleep(self.settings.sweep_interval)  # pacing the sweeps
            if self.ownership.ready:
                try:
                    with self.frozen():
                        await self.sweep()
                finally:
                    self.phase = "running"

    async def sweep(self) -> None:
        """Prune every owned customer and forget the inactive ones, a step at a time
        between batches; given up when partitions move (the next sweep starts over)."""
        epoch = self.ownership.epoch
        t0 = time.perf_counter()
        self.phase = "sweeping"
        dropped = [0]

        def steps() -> Iterator[None]:
            for gone in self.engine.sweeping(self.store.keys(), self.ownership.partition_of):
                dropped[0] += gone
                yield None

        def still() -> bool:
            return epoch == self.ownership.epoch and self.ownership.ready

        if not await self.in_steps(steps(), "sweeping", self.handling, still):
            return
        took = time.perf_counter() - t0
        self.loop_stats["last_sweep_s"] = round(took, 3)
        log.info("sweep: %d customers expired in %.1f s", dropped[0], took)
        self.trim_heap("sweep")

    def caught_up(self, handled: int) -> None:
        """Every owned input partition is read to its end: if a burst of records was
        decided since the last trim, what it freed goes back to the OS now, not at the
        next sweep (a replay at full speed leaves most of the worker's RSS freed)."""
        if handled - self._trimmed_at >= TRIM_AFTER_RECORDS:
            self.trim_heap("burst")

    def trim_heap(self, after: str) -> None:
        """What a walk over every customer (and the records decided since the last one)
        freed goes back to the operating system (``streams.worker.heap``)."""
        trimmed = self.heap.trim()
        self._trimmed_at = self.handled()
        if trimmed is None:
            return
        self.loop_stats["last_trim_ms"] = round(trimmed.took_ms, 1)
        self.loop_stats["last_trim_returned_mb"] = round(trimmed.returned / 2**20, 1)
        log.info(
            "after the %s: %.0f MB of freed memory returned to the OS in %.0f ms",
            after, trimmed.returned / 2**20, trimmed.took_ms,
        )  # fmt: skip

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """A walk over every customer (restore, sweep): the key list is taken first, as
        its own piece of work, and everything alive then is left out of the collector's
        full passes for good (``gc.freeze``, as long-running servers do after start): one
        full pass over a million customers' objects stalls the loop, and with them
        unfrozen after the walk the next full pass did. Frozen objects are still freed by
        reference counting; only cycles among them would outlive their use, and
        ``/stats/`` shows how many objects are frozen (``loop.gc_frozen``)."""
        self.store.snapshot_keys()
        gc.freeze()
        try:
            yield
        finally:
            self.store.drop_snapshot()  # a walk cut short must not leave it to the next
            self.loop_stats["gc_frozen"] = gc.get_freeze_count()

    async def watch_loop(self) -> None:
        """The longest the event loop went without running this task, per phase
        (starting, restoring, running, sweeping): what a stall (a long sweep step, a slow
        batch) cost everything else, heartbeats and the web page included. With it, the
        loop thread's own CPU time over that probe interval (``..._cpu_ms``: the 10 ms
        sleep plus the stall); a stall well above it was waiting, for the GIL (faust's
        consumer thread) or for a core (the OS running the broker)."""
        tick = 0.01
        perf, cpu = time.perf_counter, time.thread_time
        while not self.should_stop():
            t0, c0 = perf(), cpu()
            await asyncio.sleep(tick)  # the probe: how late does a 10 ms sleep wake up?
            stall = (perf() - t0 - tick) * 1000
            key = f"max_stall_ms_{self.phase}"
            if stall > self.loop_stats.get(key, 0.0):
                self.loop_stats[key] = round(stall, 1)
                self.loop_stats[f"{key}_cpu_ms"] = round((cpu() - c0) * 1000, 1)
                self.loop_stats[f"{key}_at"] = round(time.time(), 3)  # when it ended
