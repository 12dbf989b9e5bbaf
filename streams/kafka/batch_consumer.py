"""The batch shell: faust's consumer without faust's per-record event path.

faust dispatches every fetched record on its own: the fetch loop awaits the record
against the flow-control event (two tasks per record), the conductor awaits flow
control and the producer buffer, builds an ``Event``, puts it on the agent's queue,
and the stream takes it off again. On this machine that path alone tops out at about
a fraction of the worker's budget; handing each fetched batch to one coroutine
instead reads several times as many records with the same consumer (measured side by
side by ``bench/bench_peers.py``; numbers in ``bench/README.md``).

So the worker keeps everything faust does around the records (the consumer group,
the assignment and its rebalances, the changelog recovery, the seek back to the
committed offsets after each rebalance, the fetcher's pauses while tables recover)
and replaces only the loop that hands records on: ``BatchConsumer._drain_messages``
passes every fetched batch of the worker's topics to the app's ``batch_sink``.

What faust's per-record path guaranteed, and how this keeps it:

- No record is handed on while the flow is stopped (a rebalance under way, tables
  recovering): faust's ``getmany`` yields nothing then, and the sink is given the
  consumer generation faust stamped on the batch's records, so it can drop a batch a
  rebalance overtook (faust clears its agents' queues for the same reason; the seek to
  the committed offsets that every rebalance does before the flow resumes reads those
  records again).
- Records at or after the read offset only, as faust's own loop (a seek moves it).
- Back-pressure: the loop awaits the sink, so nothing more is fetched into memory
  than one batch while the worker is busy (aiokafka's prefetch aside).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.kafka import faust_internals as internals

BatchHandler = Callable[[list[Any], int], Awaitable[None]]
"""Called with one fetched batch (faust ``Message`` objects, in fetch order, which keeps
each partition's order) and the consumer generation it was fetched in."""


class BatchSink:
    """Where the drain loop hands batches: the topics it takes, and the handler."""

    __slots__ = ("handle", "topics")

    def __init__(self, topics: frozenset[str], handle: BatchHandler) -> None:
        self.topics = topics
        self.handle = handle


class FetchTuning:
    """How long the broker may hold a fetch to fill it: ``fetch.min.bytes`` and
    ``fetch.max.wait.ms``. faust hard-codes the wait (1.5 s) and leaves the minimum at
    aiokafka's 1 byte, so at a live rate every fetch returns the few records that came in
    since the last one, and each of them pays a fetch over every assigned partition, the
    idleness and marker checks and a produce request: far more CPU per record than a
    backlog. A minimum of a few KB with a wait of a few ms lets the broker gather a batch
    first."""

    __slots__ = ("max_wait_ms", "min_bytes")

    def __init__(self, min_bytes: int, max_wait_ms: int) -> None:
        self.min_bytes = min_bytes
        self.max_wait_ms = max_wait_ms


class ShellHooks:
    """What the batch shell takes from the app that uses it: where batches go, and the
    fetch tuning. An app without them (``NO_HOOKS``) gets faust's own behaviour."""

    __slots__ = ("batch_sink", "fetch_tuning")

    def __init__(
        self, batch_sink: BatchSink | None = None, fetch_tuning: FetchTuning | None = None
    ) -> None:
        self.batch_sink = batch_sink
        self.fetch_tuning = fetch_tuning


NO_HOOKS = ShellHooks()


class ShellApp(faust.App):
    """A faust App whose consumer is the batch shell, configured by ``shell``."""

    def __init__(self, id: str, *, shell: ShellHooks, **options: Any) -> None:
        self.shell = shell
        super().__init__(id, **options)

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


def hooks_of(app: Any) -> ShellHooks:
    return app.shell if isinstance(app, ShellApp) else NO_HOOKS


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with the app's ``fetch_tuning`` applied to the aiokafka
    consumer it creates (before it starts: aiokafka's fetcher takes both at start)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Committed records only, whatever the guarantee: the re-route topic and the
        # inputs may be written in transactions (ours, or a producer's upstream), and
        # what an aborted one wrote must never be decided.
        internals.read_committed(consumer)
        tuning = hooks_of(self.app).fetch_tuning
        if tuning is not None:
            internals.tune_fetches(consumer, tuning.min_bytes, tuning.max_wait_ms)
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose drain loop hands whole batches to the app's
    ``batch_sink`` (records of other topics still go through faust's dispatch)."""

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        sink = hooks_of(self.app).batch_sink
        if sink is None:
            await super()._drain_messages(fetcher)
            return
        topics, handle = sink.topics, sink.handle
        dispatch = self.callback
        getmany = self.getmany
        read_offset = internals.read_offsets(self)
        consumer_stopped = internals.is_stopped(self)
        fetcher_stopped = internals.is_stopped(fetcher)
        app = self.app
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch: list[Any] = []
                async for tp, message in getmany(timeout=1.0):
                    last = read_offset.get(tp)
                    if last is not None and message.offset < last:
                        continue  # before a seek's position: faust's own loop drops these
                    read_offset[tp] = message.offset
                    if message.topic in topics:
                        batch.append(message)
                    else:
                        await dispatch(message)
                if batch:
                    # The generation faust stamped on the records when it yielded them (one
                    # getmany never spans two), not the one before the call: a fetch waiting
                    # while a rebalance ran (revoke, assign, recovery, seek) returns records
                    # of the new generation that no later seek would read again if dropped.
                    stamp = batch[0].generation_id
                    await handle(batch, app.consumer_generation_id if stamp is None else stamp)
                else:
                    # getmany returns at once while the flow is stopped: do not spin
                    await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
