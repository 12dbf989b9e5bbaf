"""The transaction bookkeeping that needs no broker: settings, ids, what a failure
becomes, what the stats and metrics show. The transactions themselves are tested
against the real broker (tests/integration/test_delivery.py, test_exactly_once.py)."""

from __future__ import annotations

import asyncio

import pydantic
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerFenced

from streams.settings import Settings
from streams.worker.changelog import expected_end
from streams.worker.checkpoint import Checkpoints, WriteFailed
from streams.worker.metrics import Snapshot, WorkerMetrics
from streams.worker.transactions import (
    PartitionTransactions,
    TransactionFailed,
    TransactionStats,
    transactional_id,
)


@pytest.mark.parametrize(
    ("env", "guarantee", "timeout"),
    [
        ({}, "exactly_once", 10.0),  # the default, capped at 10 s
        ({"session_timeout": 6.0}, "exactly_once", 4.0),  # two thirds of a short session
        ({"transaction_timeout": 20.0}, "exactly_once", 20.0),
        ({"guarantee": "at_least_once"}, "at_least_once", 10.0),
    ],
    ids=["default", "short-session", "explicit", "at-least-once"],
)
def test_guarantee_and_transaction_timeout_defaults(
    env: dict[str, object], guarantee: str, timeout: float
) -> None:
    s = Settings(**env)  # type: ignore[arg-type]
    assert s.guarantee == guarantee
    assert s.exactly_once is (guarantee == "exactly_once")
    assert s.effective_transaction_timeout == timeout
    assert s.commit_interval == 0.1


def test_a_transaction_timeout_not_below_the_session_timeout_is_refused() -> None:
    with pytest.raises(
        pydantic.ValidationError, match=r"transaction_timeout \(45 s\) must be below"
    ):
        Settings(transaction_timeout=45.0, session_timeout=45.0)


def test_an_unknown_guarantee_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly_once"):
        Settings(guarantee="exactly_twice")


def test_transactional_ids_are_stable_per_partition_index() -> None:
    """The same id for the same partition, whichever worker or run: what lets the next
    holder fence the last one."""
    assert transactional_id("trigger-sanity", 3) == "trigger-sanity-p3"
    assert transactional_id("a", 0) != transactional_id("a", 1)


@pytest.mark.parametrize(
    ("error", "says", "fenced", "aborted"),
    [
        (ProducerFenced(), "was fenced: another worker owns partition 2", 1, 0),
        (KafkaTimeoutError(), "the transaction of partition 2 failed: KafkaTimeoutError", 0, 1),
    ],
    ids=["fenced", "timed-out"],
)
def test_a_failed_transaction_becomes_a_write_failure_that_stops_the_worker(
    error: Exception, says: str, fenced: int, aborted: int
) -> None:
    txns = PartitionTransactions(Settings())
    failed = txns._failed(2, error)
    assert isinstance(failed, TransactionFailed) and isinstance(failed, WriteFailed)
    assert says in str(failed)
    assert (txns.stats.fenced, txns.stats.aborted) == (fenced, aborted)


def test_a_write_for_a_partition_not_owned_is_refused_not_sent_elsewhere() -> None:
    txns = PartitionTransactions(Settings())
    with pytest.raises(TransactionFailed, match="partition 5, which this worker does not own"):
        asyncio.run(txns.send(5, "send-queue", b"c-1", b"{}"))


def test_the_offsets_a_commit_cycle_carries_are_the_newest_handled_per_partition() -> None:
    cp = Checkpoints()
    cp.close(("purchases", 0), 11, "m0")
    cp.close(("purchases", 1), 4, "m1")
    cp.close(("purchases", 0), 15, "m0b")
    assert cp.take_handled() == {("purchases", 0): (15, "m0b"), ("purchases", 1): (4, "m1")}
    assert cp.take_handled() == {}  # taken once
    assert cp.pending == 0


def test_transaction_stats_show_on_metrics_and_stay_off_without_transactions() -> None:
    stats = TransactionStats(committed=40, aborted=2, fenced=1, open=3, rounds=10)
    stats.seconds_total = 0.25
    stats.recent_ms.extend([5.0, 9.0, 30.0])
    shown = stats.as_dict()
    assert shown["commit_ms_p99"] == 30.0 and shown["aborted"] == 2
    text = WorkerMetrics(lambda: Snapshot(transactions=shown)).render().decode()
    assert "trigger_sanity_transactions_committed_total 40.0" in text
    assert "trigger_sanity_transactions_aborted_total 2.0" in text
    assert "trigger_sanity_producers_fenced_total 1.0" in text
    assert "trigger_sanity_transaction_commit_seconds_count 10.0" in text
    assert "trigger_sanity_transaction_commit_seconds_sum 0.25" in text
    off = WorkerMetrics(lambda: Snapshot()).render().decode()
    assert "transactions_committed" not in off


@pytest.mark.parametrize(
    ("committed_end", "loaded_offset", "expected"),
    [
        (None, 41, 42),  # nothing committed since the load: where the load ended
        (57, 41, 57),  # committed since: where the commit's marker ended it
        (30, 41, 42),  # a commit from before a later reload does not count
        (None, None, -1),  # nothing known: never matches, the partition is loaded again
    ],
    ids=["loaded-only", "committed-since", "stale-commit", "unknown"],
)
def test_a_kept_changelog_partition_is_trusted_only_where_this_worker_left_it(
    committed_end: int | None, loaded_offset: int | None, expected: int
) -> None:
    """A worker paused past the session timeout can get a partition back that another
    worker wrote meanwhile: its memory is current only if the log still ends there."""
    assert expected_end(committed_end, loaded_offset) == expected


class _Producer:
    """The part of aiokafka's transactional producer a commit uses, recording calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_offsets_to_transaction(self, offsets: object, group_id: str) -> None:
        self.calls.append("offsets")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")


def test_a_transaction_with_a_rejected_write_is_not_committed() -> None:
    """aiokafka fails only the rejected record's future and would commit the rest: the
    offsets would then move past a decision that is not there."""

    async def run() -> tuple[_Producer, _Producer, BaseException | None]:
        txns = PartitionTransactions(Settings())
        good, bad = _Producer(), _Producer()
        txns.producers = {0: good, 1: bad}
        txns.open = {0, 1}
        txns.written = {0, 1}
        loop = asyncio.get_running_loop()
        ok, rejected = loop.create_future(), loop.create_future()
        ok.set_result(None)
        rejected.set_exception(MessageSizeTooLargeError())
        txns.sent = {0: [ok], 1: [rejected]}
        try:
            await txns.commit({})
        except TransactionFailed as exc:
            return good, bad, exc
        return good, bad, None

    good, bad, failed = asyncio.run(run())
    assert failed is not None and "partition 1's transaction was rejected" in str(failed)
    assert "MessageSizeTooLargeError" in str(failed)
    assert bad.calls == [] and good.calls == ["commit"]  # only the sound one committed
