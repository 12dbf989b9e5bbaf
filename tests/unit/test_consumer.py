"""The batch shell (streams.consumer) and the worker's batch handler, without a broker:
the drain loop's hand-over rules, and which batches the worker handles or drops.

The broker-side behaviour (fetching, rebalances, seeks back to the committed offsets)
is faust's and is exercised by the integration suite (test_delivery, test_worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import TP, Message

from streams.core.policy import DEFAULT_POLICY
from streams.kafka.batch_consumer import BatchConsumer, BatchSink, ShellApp, ShellHooks
from streams.kafka.faust_internals import fetch_tuning_of
from streams.settings import Settings
from streams.worker.worker import Worker


def _app(name: str, hooks: ShellHooks) -> ShellApp:
    return ShellApp(name, shell=hooks, broker="kafka://127.0.0.1:1", store="memory://")


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _msg(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, 0.0, 0, None, b"k", b"v", None)


async def _drain(
    fetches: list[list[Message]],
    read_offset: dict[TP, int],
    rebalanced_during: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Runs the drain loop over ``fetches`` (one getmany result each) and stops it. Like
    faust's ``getmany``, the fake stamps each record with the consumer generation when it
    yields it; before the fetches in ``rebalanced_during`` it bumps the generation (a
    rebalance ran while that fetch was waiting)."""
    hooks = ShellHooks()
    app = _app("test-drain", hooks)
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    fetcher = _Fetcher()
    seen: dict[str, Any] = {"batches": [], "dispatched": []}
    app.consumer_generation_id = 7

    async def handle(batch: list[Any], generation: int) -> None:
        seen["batches"].append(([(m.topic, m.offset) for m in batch], generation))

    async def dispatch(message: Any) -> None:
        seen["dispatched"].append((message.topic, message.offset))

    pending = list(enumerate(fetches))

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        if not pending:
            fetcher._stopped.set()
            return
        i, fetch = pending.pop(0)
        if i in rebalanced_during:
            app.consumer_generation_id += 1
        for m in fetch:
            m.generation_id = app.consumer_generation_id
            yield m.tp, m

    hooks.batch_sink = BatchSink(frozenset({"purchases", "sessions"}), handle)
    consumer.callback = dispatch  # type: ignore[assignment]
    consumer.getmany = getmany  # type: ignore[method-assign]
    consumer._read_offset.update(read_offset)
    await asyncio.wait_for(consumer._drain_messages(fetcher), 5)
    return seen


def test_each_fetch_is_handed_over_whole_with_the_generation_it_was_fetched_in() -> None:
    fetches = [
        [_msg("purchases", 0, 0), _msg("sessions", 1, 0), _msg("purchases", 0, 1)],
        [_msg("sessions", 1, 1)],
    ]
    seen = asyncio.run(_drain(fetches, {}))
    assert seen["batches"] == [
        ([("purchases", 0), ("sessions", 0), ("purchases", 1)], 7),
        ([("sessions", 1)], 7),
    ]
    assert seen["dispatched"] == []


def test_a_fetch_that_waited_through_a_rebalance_carries_the_new_generation() -> None:
    # Handed over with the generation before the call, the worker would drop these
    # records as overtaken, and the seek that rebalance did came before them: lost.
    fetches = [[_msg("purchases", 0, 0)], [_msg("purchases", 0, 1)]]
    seen = asyncio.run(_drain(fetches, {}, rebalanced_during=frozenset({1})))
    assert seen["batches"] == [([("purchases", 0)], 7), ([("purchases", 1)], 8)]


def test_records_before_a_seeks_position_are_not_handed_over_again() -> None:
    tp = TP("purchases", 0)
    fetches = [[_msg("purchases", 0, o) for o in (8, 9, 10, 11)]]
    seen = asyncio.run(_drain(fetches, {tp: 10}))
    assert seen["batches"] == [([("purchases", 10), ("purchases", 11)], 7)]


def test_records_of_topics_the_worker_does_not_take_go_through_fausts_dispatch() -> None:
    fetches = [[_msg("purchases", 0, 0), _msg("other", 0, 5), _msg("purchases", 0, 1)]]
    seen = asyncio.run(_drain(fetches, {}))
    assert seen["batches"] == [([("purchases", 0), ("purchases", 1)], 7)]
    assert seen["dispatched"] == [("other", 5)]


def test_an_empty_fetch_hands_nothing_over() -> None:
    seen = asyncio.run(_drain([[], [_msg("purchases", 0, 0)]], {}))
    assert seen["batches"] == [([("purchases", 0)], 7)]


# ------------------------------------------------------------ the worker's handler


def _worker(batch_size: int) -> tuple[Worker, list[list[int]]]:
    settings = Settings(bootstrap_servers="127.0.0.1:1", batch_size=batch_size, web_enabled=False)  # type: ignore[call-arg]
    worker = Worker(settings, DEFAULT_POLICY)
    handled: list[list[int]] = []

    async def handle_batch(messages: list[Any]) -> None:
        handled.append([m.offset for m in messages])

    worker.batches.handle_batch = handle_batch  # type: ignore[method-assign]
    return worker, handled


def _batch(n: int) -> list[Message]:
    return [_msg("purchases", 0, o) for o in range(n)]


@pytest.mark.parametrize(
    ("scenario", "fetched_in", "flow_active", "want"),
    [
        ("same generation, flow on: handled in batch_size chunks", 0, True,
         [[0, 1, 2], [3, 4, 5], [6]]),
        ("a rebalance came between fetch and hand-over: dropped", -1, True, []),
        ("a rebalance is under way (flow stopped): dropped", 0, False, []),
    ],
)  # fmt: skip
def test_the_worker_handles_a_batch_only_in_the_generation_it_was_fetched_in(
    scenario: str, fetched_in: int, flow_active: bool, want: list[list[int]]
) -> None:
    async def run() -> list[list[int]]:
        worker, handled = _worker(batch_size=3)
        worker.app.consumer_generation_id = 4
        worker.app.consumer.flow_active = flow_active
        await worker.batches.on_batch(_batch(7), 4 + fetched_in)
        return handled

    assert asyncio.run(run()) == want, scenario


def test_a_stopping_worker_handles_nothing_more_and_waits_to_be_cancelled() -> None:
    async def run() -> tuple[list[list[int]], bool]:
        worker, handled = _worker(batch_size=3)
        worker.app.consumer_generation_id = 1
        worker.batches.stopping.set()
        task = asyncio.ensure_future(worker.batches.on_batch(_batch(4), 1))
        done, _ = await asyncio.wait([task], timeout=0.2)
        task.cancel()
        return handled, bool(done)

    handled, returned = asyncio.run(run())
    assert handled == []
    assert not returned


@pytest.mark.parametrize(
    ("min_bytes", "max_wait_ms"),
    [pytest.param(1, 1500, id="faust_defaults"), pytest.param(16384, 20, id="gather_16kb")],
)
def test_fetch_tuning_reaches_the_aiokafka_consumer_before_it_starts(
    min_bytes: int, max_wait_ms: int
) -> None:
    """faust builds the aiokafka consumer with a fixed wait and aiokafka's 1-byte
    minimum; the consumer thread sets the app's tuning on it before ``start`` builds the
    fetcher from those two attributes (which the pinned aiokafka reads there)."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    from streams.kafka.batch_consumer import FetchTuning

    async def built() -> tuple[int, int]:
        app = _app("test-fetch", ShellHooks(fetch_tuning=FetchTuning(min_bytes, max_wait_ms)))
        thread = app.consumer._new_consumer_thread()  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return fetch_tuning_of(consumer)
        finally:
            await consumer._client.close()

    assert asyncio.run(built()) == (min_bytes, max_wait_ms)
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def test_worker_settings_map_onto_the_fetch_tuning() -> None:
    settings = Settings(
        bootstrap_servers="127.0.0.1:1",  # type: ignore[call-arg]
        fetch_min_bytes=4096,
        fetch_max_wait_ms=7,
        web_enabled=False,
    )
    worker = Worker(settings, DEFAULT_POLICY)
    tuning = worker.app.shell.fetch_tuning
    assert tuning is not None and (tuning.min_bytes, tuning.max_wait_ms) == (4096, 7)
