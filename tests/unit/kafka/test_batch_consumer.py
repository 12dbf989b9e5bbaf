"""The batch shell (streams.kafka.batch_consumer) without a broker: the drain loop's
hand-over rules and the fetch tuning. The broker-side behaviour (fetching, rebalances,
seeks back to the committed offsets) is faust's and is exercised by the integration suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import TP, Message

from streams.kafka.batch_consumer import BatchConsumer, BatchSink, ShellApp, ShellHooks
from streams.kafka.faust_internals import fetch_tuning_of


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


@pytest.mark.parametrize(
    ("min_bytes", "max_wait_ms"),
    [pytest.param(1, 1500, id="faust_defaults"), pytest.param(16384, 20, id="gather_16kb")],
)
def test_fetch_tuning_reaches_the_aiokafka_consumer_before_it_starts(
    min_bytes: int, max_wait_ms: int
) -> None:
    """faust builds the aiokafka consumer with a fixed wait and aiokafka's 1-byte
    minimum; the consumer thread sets the app's tuning on it before ``start`` builds the
    fetcher from those two attributes (``test_faust_internals`` checks that it still
    reads them there)."""
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
