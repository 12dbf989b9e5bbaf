"""The worker's batch handler (streams.worker.batches) without a broker: which batches it
handles or drops, and the settings it takes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import Message

from streams.core.policy import DEFAULT_POLICY
from streams.settings import Settings
from streams.worker.worker import Worker


def _msg(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, 0.0, 0, None, b"k", b"v", None)


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
    """Not a timeout: the loop runs every callback that is ready, then the handler must
    be the one thing still waiting, and a cancel must be what ends it."""

    async def run() -> tuple[list[list[int]], bool, bool]:
        worker, handled = _worker(batch_size=3)
        worker.app.consumer_generation_id = 1
        worker.batches.stopping.set()
        task = asyncio.ensure_future(worker.batches.on_batch(_batch(4), 1))
        for _ in range(20):  # every ready callback runs; the handler blocks, if it blocks
            await asyncio.sleep(0)
        waiting = not task.done()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return handled, waiting, True
        return handled, waiting, False

    handled, waiting, cancelled = asyncio.run(run())
    assert handled == []
    assert waiting and cancelled


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
