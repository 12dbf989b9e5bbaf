"""What the consumer knows about each input partition, for the watermarks: its end
offset as of the last fetch answer, whether that answer is recent, and where the
worker has read to. A partition whose fetches stopped being answered (the broker is
down or unreachable) is not caught up, however close its last known end was."""

from __future__ import annotations

import time

from faust.types import TP

from streams.kafka import faust_internals as internals
from streams.worker.app import WorkerApp


class ConsumerFetches:
    def __init__(self, app: WorkerApp, within: float) -> None:
        self.app = app
        # where each input and re-route partition has been read to (next offset): Batches
        self.next_offset: dict[tuple[str, int], int] = {}
        # where partitions not read since the start begin (committed, else earliest): the
        # idle check looks them up
        self.committed: dict[tuple[str, int], int] = {}
        self.within_ms = within * 1000

    def reset(self) -> None:
        """A recovery: reading starts over from the committed offsets."""
        self.next_offset.clear()
        self.committed.clear()

    def highwater(self, tp: tuple[str, int]) -> int | None:
        hw: int | None = self.app.consumer.highwater(TP(tp[0], tp[1]))
        return hw

    def fresh(self, tp: tuple[str, int]) -> bool:
        stamp = internals.last_fetch_ms(self.app.consumer, tp)
        return stamp is not None and time.time() * 1000 - stamp <= self.within_ms

    def position(self, tp: tuple[str, int]) -> int | None:
        at = self.next_offset.get(tp)
        return self.committed.get(tp) if at is None else at
