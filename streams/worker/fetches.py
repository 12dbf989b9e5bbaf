"""What the consumer knows about each input partition, for the watermarks: its end
offset as of the last fetch answer, whether that answer is recent, and where the
worker has read to. A partition whose fetches stopped being answered (the broker is
down or unreachable) is not caught up, however close its last known end was, nor
for ``TRIGGER_SANITY_OUTAGE_GRACE`` after it answers again (``Answering``)."""

from __future__ import annotations

import logging
import time

from faust.types import TP

from streams.kafka import faust_internals as internals
from streams.processing.watermarks import Answering
from streams.worker.app import WorkerApp

log = logging.getLogger("trigger_sanity.worker")


WATCH_SILENCE = 4.0
"""Seconds without a fetch answer for a caught-up partition that the watch between idle
checks takes for an outage."""


class ConsumerFetches:
    def __init__(self, app: WorkerApp, within: float, outage_grace: float) -> None:
        self.app = app
        # where each input and re-route partition has been read to (next offset): Batches
        self.next_offset: dict[tuple[str, int], int] = {}
        # where partitions not read since the start begin (committed, else earliest): the
        # idle check looks them up
        self.committed: dict[tuple[str, int], int] = {}
        self.answering = Answering(within, outage_grace)  # kept across recoveries

    def reset(self) -> None:
        """A recovery: reading starts over from the committed offsets."""
        self.next_offset.clear()
        self.committed.clear()

    def highwater(self, tp: tuple[str, int]) -> int | None:
        hw: int | None = self.app.consumer.highwater(TP(tp[0], tp[1]))
        return hw

    def fresh(self, tp: tuple[str, int]) -> bool:
        stamp: float | None = internals.last_fetch_ms(self.app.consumer, tp)
        now = time.time() * 1000
        if stamp is not None and internals.fetch_backlog(self.app.consumer):
            stamp = now  # not fetched because records wait to be handed on: no outage
        before = self.answering.in_grace()
        fresh = self.answering.fresh(tp, stamp, now)
        after = self.answering.in_grace()
        if after and not before:
            log.warning(
                "fetches of %s-%d not answered for over %.1f s: input partitions are not "
                "taken as caught up until %.0f s after the broker answers again",
                tp[0], tp[1], self.answering.within_ms / 1000, self.answering.grace_ms / 1000,
            )  # fmt: skip
        elif before and not after:
            log.info("input partitions answered again for the whole outage grace")
        return fresh

    def watch(self, tps: list[tuple[str, int]]) -> None:
        """Look at the fetch answers of the caught-up partitions now, without waiting for
        the broker. The idle check asks too, but it waits for end offsets, so with the
        broker down it is stuck until the broker is back, by when the answers are recent
        again and the outage would go unseen. Only a silence of ``WATCH_SILENCE`` counts
        here: a busy worker working through a backlog leaves caught-up partitions
        unfetched for a second or two, and that is no outage. A partition with fetched
        records still to hand on is not asked: it is not fetched until they are."""
        # Not skipped while records wait to be handed on (as ``fresh`` does): with the
        # broker gone the worker's own writes block, records stop being handed on, and
        # that looks like back-pressure; four seconds of it does not happen on a backlog.
        now = time.time() * 1000
        before = self.answering.in_grace()
        for tp in tps:
            hw, at = self.highwater(tp), self.position(tp)
            if hw is not None and at is not None and at >= hw:
                stamp = internals.last_fetch_ms(self.app.consumer, tp)
                self.answering.silent(tp, stamp, now, WATCH_SILENCE * 1000)
        if self.answering.in_grace() and not before:
            log.warning(
                "input partitions' fetches not answered for over %.0f s: not taken as "
                "caught up until %.0f s after the broker answers again",
                WATCH_SILENCE, self.answering.grace_ms / 1000,
            )  # fmt: skip

    def position(self, tp: tuple[str, int]) -> int | None:
        at = self.next_offset.get(tp)
        return self.committed.get(tp) if at is None else at
