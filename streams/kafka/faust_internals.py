"""Every private faust and aiokafka name trigger-sanity relies on, in one module.

faust-streaming and aiokafka are pinned exactly (``pyproject.toml``) because the
worker reaches below their public API in a few places, each for a reason given where
it is used: the batch shell replaces faust's per-record drain loop, the worker
commits offsets with metadata on faust's consumer thread, and the fetch tuning sets
two attributes aiokafka reads only when it starts. Everything of that kind is here,
as a function or in ``OVERRIDES``, so an upgrade has one place to check, and
``tests/unit/kafka/test_faust_internals.py`` fails when an upgrade renames or
reshapes any of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import faust
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.structs import TopicPartition as AioTP
from faust.exceptions import ConsumerNotStarted
from faust.tables.base import Collection
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

OVERRIDES: tuple[tuple[type, str], ...] = (
    # the batch shell (streams.kafka.batch_consumer): the loop that hands records on
    (faust_aiokafka.Consumer, "_drain_messages"),
    (faust_aiokafka.Consumer, "_new_consumer_thread"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    # the worker's app and table (streams.worker.app): our transport and memory store
    (faust.App, "_new_transport"),
    (Collection, "_new_store_by_url"),
)
"""Private methods our subclasses override: (faust class, method name)."""

ABORTABLE_ERROR = TransactionState.ABORTABLE_ERROR
FATAL_ERROR = TransactionState.FATAL_ERROR


def read_offsets(consumer: faust_aiokafka.Consumer) -> MutableMapping[TP, int | None]:
    """The drain loop's read position per partition (a seek moves it)."""
    return consumer._read_offset


def is_stopped(service: Any) -> Callable[[], bool]:
    """Whether a faust consumer or its fetcher has been told to stop."""
    stopped: Callable[[], bool] = service._stopped.is_set
    return stopped


def tune_fetches(aio_consumer: Any, min_bytes: int, max_wait_ms: int) -> None:
    """``fetch.min.bytes`` and ``fetch.max.wait.ms`` of an aiokafka consumer not yet
    started: faust passes neither, and aiokafka reads both attributes in ``start``."""
    aio_consumer._fetch_min_bytes = min_bytes
    aio_consumer._fetch_max_wait_ms = max_wait_ms


def read_committed(aio_consumer: Any) -> None:
    """faust picks read_committed only with its own exactly_once (which we do not use):
    set it on the aiokafka consumer before it starts (its fetcher takes it at start)."""
    aio_consumer._isolation_level = "read_committed"


def transaction_error(producer: Any) -> BaseException | None:
    """The error that put an aiokafka transactional producer in its error state (e.g.
    ``ProducerFenced`` found by its sender in the background), None if it is not in one.
    After it, aiokafka refuses further transaction calls with a bare AssertionError
    (an invalid state transition) that does not say why."""
    manager = producer._txn_manager
    if manager is None or manager.state not in (ABORTABLE_ERROR, FATAL_ERROR):
        return None
    waiter = manager._transaction_waiter
    if waiter is None or not waiter.done() or waiter.cancelled():
        return None
    exc: BaseException | None = waiter.exception()
    return exc


def fetch_tuning_of(aio_consumer: Any) -> tuple[int, int]:
    return aio_consumer._fetch_min_bytes, aio_consumer._fetch_max_wait_ms


def on_consumer_thread(
    consumer: Any, fn: Callable[..., Awaitable[Any]], *args: Any
) -> Awaitable[Any]:
    """Run ``fn`` on faust's consumer thread, which owns the aiokafka consumer."""
    called: Awaitable[Any] = consumer._thread.call_thread(fn, *args)
    return called


def client_consumer(consumer: Any) -> Any:
    """The aiokafka consumer inside faust's (only on the consumer thread)."""
    return consumer._thread._ensure_consumer()


def note_committed(consumer: Any, tps: Iterable[tuple[str, int]], now: float) -> None:
    """Tell faust's stall detector these partitions were committed (it logs "no commit"
    warnings from this map, and the worker commits without faust)."""
    consumer._thread.tp_last_committed_at.update({TP(t, p): now for t, p in tps})


def fetch_backlog(consumer: Any) -> bool:
    """Does aiokafka hold fetched records not yet handed on? Then it fetches nothing
    more from their broker (its fetcher skips a node while any of its partitions has
    records waiting), so caught-up partitions get no answers: back-pressure, not an
    outage. Read from the event loop's thread (a dict's truth value)."""
    try:
        aio = client_consumer(consumer)
    except (AssertionError, ConsumerNotStarted):
        return False
    fetcher = aio._fetcher
    return fetcher is not None and bool(fetcher._records)


def last_fetch_ms(consumer: Any, tp: tuple[str, int]) -> int | None:
    """When the last fetch answer for ``tp`` came (epoch ms, aiokafka's clock), None
    before the first or when the partition is not assigned. Read from the event loop's
    thread, as faust reads the highwater it comes with."""
    try:
        aio = client_consumer(consumer)
        stamp: int | None = aio.last_poll_timestamp(AioTP(tp[0], tp[1]))
    except (AssertionError, ConsumerNotStarted):
        return None
    return stamp
