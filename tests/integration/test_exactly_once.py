"""Exactly-once delivery (the default guarantee) against a real broker, and what the old
at-least-once protocol still writes twice.

- five ``kill -9`` through a 3,000-customer backlog, each when a given share of the
  decisions is visible to a read_committed reader: nothing missing, different or
  written twice;
- a zombie: a worker paused (SIGSTOP) past the session timeout while its partitions
  move to another worker, then resumed (SIGCONT): its transactional ids were taken
  over, so nothing it still had open, or writes after it wakes, ever becomes visible;
- ``TRIGGER_SANITY_GUARANTEE=at_least_once`` through the three kills of
  ``test_delivery``: nothing missing or different, byte-identical duplicates counted
  (the README quotes the number).

Every run is checked as ``test_delivery`` checks it (``_check``): each candidate counted
by message_id, reading committed records only, against the offline replay.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import TopicPartition

from streams.contract.history import write_history
from streams.kafka.reader import assign_all, open_reader
from streams.offline.generator import generate
from streams.ops.verify import DecisionKey, decision_key
from streams.settings import Settings
from tests.integration.conftest import Env, WorkerProc
from tests.integration.live import offline_keys
from tests.integration.test_delivery import (
    CUSTOMERS,
    PARTITIONS,
    _check,
    _finish,
    _fresh,
    _produce,
)

BACKLOG_CUSTOMERS = 3000
DECISION_ROLES = ("send_queue", "suppressed")
# the tests' own deadlines (below) fire first, with the worker's log in the failure
pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class History:
    path: Path
    offline: list[DecisionKey]  # the offline replay's decisions: what the run owes
    candidates: int


def _history(tmp: Path, customers: int, seed: int) -> History:
    path = tmp / "history.jsonl"
    records = generate(customers, seed=seed)
    write_history(path, records)
    candidates = sum(1 for r in records if r["topic"] == "outbound")
    return History(path, offline_keys(path, PARTITIONS), candidates)


@pytest.fixture(scope="module")
def backlog(tmp_path_factory: pytest.TempPathFactory) -> History:
    """3,000 generated customers (~41,000 records, ~20,700 candidates)."""
    return _history(tmp_path_factory.mktemp("eos-backlog"), BACKLOG_CUSTOMERS, seed=3000)


@pytest.fixture(scope="module")
def delivery_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The history of ``test_delivery`` (1,500 customers, the same seed)."""
    return _history(tmp_path_factory.mktemp("eos-delivery"), CUSTOMERS, seed=404)


class Visible:
    """The decisions on the output topics (send-queue + suppressed) as a read_committed
    reader sees them, read incrementally by one consumer kept open: each poll reads only
    what was committed since the last."""

    def __init__(self, settings: Settings) -> None:
        # a short fetch wait: a decision committed is seen within ~0.1 s
        self.consumer = open_reader(settings, fetch_max_wait_ms=50)
        self.roles = {settings.topics[r]: r for r in DECISION_ROLES}
        self.tps: list[TopicPartition] = assign_all(self.consumer, settings, self.roles)
        self.consumer.seek_to_beginning(*self.tps)
        self.keys: list[DecisionKey] = []

    @property
    def seen(self) -> int:
        return len(self.keys)

    def poll(self) -> int:
        """Read what is committed now (waits at most 0.1 s for it); the count seen."""
        batch = self.consumer.poll(timeout_ms=100, max_records=100_000)
        for tp, recs in batch.items():
            role = self.roles[tp.topic]
            self.keys.extend(decision_key(role, r.value) for r in recs)
        return self.seen

    def wait_for(
        self, done: Callable[[int], bool], worker: WorkerProc, timeout: float = 120
    ) -> int:
        """Poll (every 0.1 s at most) until ``done(seen)``; fails if ``worker`` exits or
        the time runs out."""
        deadline = time.monotonic() + timeout
        while not done(self.poll()):
            assert worker.proc.poll() is None, worker.tail()
            assert time.monotonic() < deadline, f"{self.seen} decisions seen\n{worker.tail()}"
        return self.seen

    def drain(self, timeout: float = 60) -> list[DecisionKey]:
        """Everything committed up to the topics' last stable offsets as of now."""
        ends = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, "the output topics could not be read to the end"
            self.poll()
        return list(self.keys)

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def visible(ts_env: Env) -> Iterator[Callable[[], Visible]]:
    """Opens a ``Visible`` on the deployment's current topics (call it after
    ``_fresh``); closed at teardown."""
    opened: list[Visible] = []

    def open_() -> Visible:
        opened.append(Visible(ts_env.settings))
        return opened[-1]

    yield open_
    for v in opened:
        v.close()


# ------------------------------------------------------------------ kill -9 in a backlog

KILL_AT = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Shares of the owed decisions visible when each worker is killed."""


def test_five_kill_9_through_a_3000_customer_backlog_write_nothing_twice(
    ts_env: Env, backlog: History, visible: Callable[[], Visible]
) -> None:
    """The whole history is in the topics before the first worker starts; each worker is
    killed once a share of the decisions is visible (and it made some of them visible
    itself), so every kill lands mid-transaction with the backlog still being read."""
    began = time.monotonic()
    _fresh(ts_env, "e5")
    produced = _produce(ts_env, backlog.path, rate=None)
    owed = len(backlog.offline)
    out = visible()
    kills: list[str] = []
    for share in KILL_AT:
        worker = ts_env.worker()
        at_start = out.seen

        def due(n: int, since: int = at_start, share: float = share) -> bool:
            return n >= share * owed and n > since

        at = out.wait_for(due, worker)
        worker.kill()
        kills.append(f"{at} ({at / owed:.0%}, +{at - at_start} by this worker)")
    last = ts_env.worker()
    _finish(ts_env, last, backlog.offline)
    result = _check(ts_env, backlog.offline, "5x kill -9 through a backlog", produced)
    print(
        f"killed at {', '.join(kills)} of {owed} decisions visible; "
        f"{time.monotonic() - began:.0f} s"
    )
    assert result.decisions == owed, result.render()


# ------------------------------------------------------------------ a zombie

_RECOVERED = re.compile(r"state recovered: partitions \[([0-9, ]*)\]")
_FENCED = re.compile(r"fenced|abort", re.IGNORECASE)


def _owned(worker: WorkerProc, since: int = 0) -> set[int] | None:
    """The partitions of the worker's last recovery logged after byte ``since`` of its
    log, or None when none was."""
    found = _RECOVERED.findall(worker.log.read_bytes()[since:].decode(errors="replace"))
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None


def _wait(what: str, done: Callable[[], bool], *alive: WorkerProc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for w in alive:
            assert w.proc.poll() is None, f"waiting for {what}:\n{w.tail()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n" + "\n".join(
            w.tail(20) for w in alive
        )
        time.sleep(0.2)  # polling the workers' logs, bounded by the deadline


def _count_decisions(settings: Settings, isolation: str) -> int:
    """Decision records on the output topics up to their end offsets, as a reader with
    this isolation level sees them (read_uncommitted: aborted records included)."""
    consumer = open_reader(settings, isolation_level=isolation)
    try:
        tps = assign_all(consumer, settings, [settings.topics[r] for r in DECISION_ROLES])
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        n = 0
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for recs in consumer.poll(timeout_ms=500, max_records=100_000).values():
                n += len(recs)
        return n
    finally:
        consumer.close()


def test_a_zombie_worker_writes_nothing_visible_after_it_was_fenced(
    ts_env: Env, backlog: History, visible: Callable[[], Visible]
) -> None:
    """A and B share the partitions while input arrives; A is paused (SIGSTOP) past the
    session timeout, B takes A's partitions (initialising their transactional ids, which
    aborts A's open transactions and fences A) and goes on; then A resumes (SIGCONT).
    Nothing of A's may become visible after that: no decision is written twice, and A
    learns it was fenced (or stops otherwise) instead of committing."""
    began = time.monotonic()
    _fresh(ts_env, "zb")
    produced = _produce(ts_env, backlog.path)
    owed = Counter(k[0] for k in backlog.offline)
    everything = set(range(PARTITIONS))
    out = visible()
    a = ts_env.worker()
    out.wait_for(lambda n: n > 0, a)  # A, alone, has decided something
    b = ts_env.worker()

    def split() -> bool:
        mine, theirs = _owned(a), _owned(b)
        return bool(mine and theirs and not mine & theirs and mine | theirs == everything)

    _wait("partitions split between A and B", split, a, b)
    a_had = _owned(a)
    seen_at_stop = out.poll()
    os.kill(a.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    mark = b.log.stat().st_size
    _wait(
        "B recovering every partition after A stopped",
        lambda: _owned(b, mark) == everything,
        b,
        timeout=ts_env.settings.session_timeout + 60,
    )
    took_over = time.monotonic() - stopped_at
    at_takeover = out.poll()
    # B goes on: it decides again what A had not committed (or, if nothing was left,
    # everything is out already)
    out.wait_for(lambda n: n > at_takeover or n == owed.total(), b)
    before = Counter(k[0] for k in out.drain())
    a_mark = a.log.stat().st_size
    os.kill(a.proc.pid, signal.SIGCONT)
    resumed_at = time.monotonic()

    def a_done() -> bool:
        tail = a.log.read_bytes()[a_mark:].decode(errors="replace")
        return a.proc.poll() is not None or "state recovered" in tail

    _wait("A exiting (or rejoining) after SIGCONT", a_done, b, timeout=60)
    a_after = a.log.read_bytes()[a_mark:].decode(errors="replace")
    a_exit = a.proc.poll()
    a_rejoined = a_exit is None and _owned(a, a_mark)
    fence_lines = [line for line in a_after.splitlines() if _FENCED.search(line)]
    _finish(ts_env, b, backlog.offline)
    if a.proc.poll() is None:
        a.stop()
    else:
        a.fh.close()
    result = _check(ts_env, backlog.offline, "zombie fenced", produced)
    after = Counter(k[0] for k in out.drain()) - before
    again = sum(min(n, max(0, before[m] + n - owed[m])) for m, n in after.items())
    aborted = _count_decisions(ts_env.settings, "read_uncommitted") - _count_decisions(
        ts_env.settings, "read_committed"
    )
    print(
        f"zombie: A owned {sorted(a_had or ())}, stopped with {seen_at_stop} decisions "
        f"visible; B owned every partition {took_over:.1f} s later; {before.total()} visible "
        f"before SIGCONT, {after.total()} after (decided again: {again}); "
        f"{aborted} decision records aborted in all; after SIGCONT A "
        + (
            f"exited {a_exit} after {time.monotonic() - resumed_at:.1f} s"
            if a_exit is not None
            else f"rejoined with partitions {sorted(a_rejoined or ())}"
        )
        + f"; {time.monotonic() - began:.0f} s\nA's log after SIGCONT, fenced/abort lines:\n"
        + "\n".join(fence_lines[-5:])
    )
    assert again == 0, (again, result.render())
    assert (a_exit is not None and a_exit != 0) or any("fenced" in x for x in fence_lines), (
        f"A neither exited non-zero nor logged being fenced after SIGCONT:\n{a_after[-3000:]}"
    )


# ------------------------------------------------------------------ at-least-once


def test_at_least_once_mode_reports_its_duplicates(ts_env: Env, delivery_history: History) -> None:
    """``test_delivery``'s three kills with the old protocol: nothing lost or changed;
    duplicates, if any, byte-identical (their number is printed, not asserted: it
    depends on where the kills land)."""
    began = time.monotonic()
    h = delivery_history
    _fresh(ts_env, "al")
    ts_env.env["TRIGGER_SANITY_GUARANTEE"] = "at_least_once"
    produced = _produce(ts_env, h.path)
    workers = []
    for share in (0.2, 0.45, 0.7):
        worker = ts_env.worker()
        workers.append(worker)
        ts_env.wait_committed("outbound", int(h.candidates * share), worker)
        worker.kill()
    last = ts_env.worker()
    workers.append(last)
    _finish(ts_env, last, h.offline)
    result = _check(ts_env, h.offline, "at_least_once, 3x kill -9", produced, True)
    print(
        f"at_least_once, 3x kill -9: {result.duplicated_identical} byte-identical "
        f"duplicates of {result.decisions} decisions; {time.monotonic() - began:.0f} s"
    )
    for w in workers:  # the old protocol ran: no transactional ids were initialised
        assert b"transactional ids" not in w.log.read_bytes(), w.tail()
