"""Every private faust / aiokafka name we rely on still exists and still means what we
use it for (``streams.kafka.faust_internals``). An upgrade of either pin that renames,
removes or reshapes one fails here, by name, instead of in a worker at 3 a.m."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka import faust_internals as internals
from streams.kafka.batch_consumer import (
    BatchConsumer,
    BatchConsumerThread,
    BatchTransport,
    FetchTuning,
    ShellApp,
    ShellHooks,
)
from streams.worker.app import DurableTable, WorkerApp
from streams.worker.changelog import BulkLoadedStore

OUR_SUBCLASSES = (
    BatchConsumer, BatchConsumerThread, BatchTransport, ShellApp, WorkerApp, DurableTable,
    BulkLoadedStore,
)  # fmt: skip


def _app(hooks: ShellHooks | None = None) -> ShellApp:
    return ShellApp(
        "test-internals", shell=hooks or ShellHooks(), broker="kafka://127.0.0.1:1",
        store="memory://",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("base", "name"), internals.OVERRIDES, ids=[f"{b.__name__}.{n}" for b, n in internals.OVERRIDES]
)
def test_every_private_method_we_override_still_exists_with_the_same_parameters(
    base: type, name: str
) -> None:
    theirs = getattr(base, name, None)
    assert theirs is not None, f"{base.__name__}.{name} is gone"
    ours = [c for c in OUR_SUBCLASSES if issubclass(c, base) and name in vars(c)]
    assert ours, f"no subclass of ours overrides {base.__name__}.{name}: drop it from OVERRIDES"
    want = list(inspect.signature(theirs).parameters)
    for cls in ours:
        got = list(inspect.signature(vars(cls)[name]).parameters)
        assert got == want, f"{cls.__name__}.{name}{got} != {base.__name__}.{name}{want}"


def test_every_private_override_of_ours_is_listed() -> None:
    """A private method one of our subclasses overrides is a pinned-version dependency:
    it must be in OVERRIDES (so the test above watches it)."""
    listed = {(b, n) for b, n in internals.OVERRIDES}
    for cls in OUR_SUBCLASSES:
        for name in vars(cls):
            if not name.startswith("_") or name.startswith("__") or name == "_abc_impl":
                continue
            if not callable(vars(cls)[name]):
                continue
            bases = [b for b in cls.__mro__[1:] if name in vars(b)]
            if not bases:
                continue  # our own helper, not an override
            # listed for the class we subclass, which may inherit it from further up
            assert any(n == name and issubclass(lb, bases[0]) and issubclass(cls, lb)
                       for lb, n in listed), f"{cls.__name__}.{name}"  # fmt: skip


def test_the_drain_loop_state_we_read() -> None:
    async def run() -> None:
        consumer = _app().consumer
        assert isinstance(consumer, BatchConsumer)
        offsets = internals.read_offsets(consumer)
        offsets[TP("t", 0)] = 5
        assert internals.read_offsets(consumer)[TP("t", 0)] == 5
        stopped = internals.is_stopped(consumer)
        assert stopped() is False
        consumer._stopped.set()
        assert stopped() is True

    asyncio.run(run())


def test_fetch_tuning_is_set_where_aiokafka_reads_it_at_start() -> None:
    async def run() -> tuple[int, int]:
        app = _app(ShellHooks(fetch_tuning=FetchTuning(4096, 7)))
        thread = app.consumer._new_consumer_thread()  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return internals.fetch_tuning_of(consumer)
        finally:
            await consumer._client.close()

    assert asyncio.run(run()) == (4096, 7)
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def test_the_consumer_thread_members_the_commit_uses() -> None:
    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    assert inspect.iscoroutinefunction(thread_cls.call_thread)
    assert callable(thread_cls._ensure_consumer)

    async def run() -> Any:
        consumer = _app().consumer
        thread = consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, thread_cls)
        assert thread.tp_last_committed_at == {}
        internals.note_committed(consumer, [("t", 1)], 12.0)
        return thread.tp_last_committed_at

    assert asyncio.run(run()) == {TP("t", 1): 12.0}


def test_a_plain_faust_app_gets_no_shell() -> None:
    from streams.kafka.batch_consumer import NO_HOOKS, hooks_of

    app = faust.App("test-plain", broker="kafka://127.0.0.1:1", store="memory://")
    assert hooks_of(app) is NO_HOOKS
