"""Exactly-once delivery (the default guarantee) against a real broker, and what the old
at-least-once protocol still writes twice.

- five ``kill -9`` through a 3,000-customer backlog, each when a given share of the
  decisions is visible to a read_committed reader: nothing missing, different or
  written twice;
- a zombie: a worker paused (SIGSTOP) with decisions in open transactions, past the
  session timeout, while its partitions move to another worker, then resumed
  (SIGCONT): its transactional ids were taken over, so nothing it had open, or writes
  after it wakes, ever becomes visible;
- ``TRIGGER_SANITY_GUARANTEE=at_least_once`` through the three kills of
  ``test_delivery``: nothing missing or different, byte-identical duplicates counted
  (the README quotes the number).

Every run is checked as ``test_delivery`` checks it (``_check``): each candidate counted
by message_id, reading committed records only, against the offline replay. Decisions
still in open transactions are found from outside: on an output partition, offsets from
the last stable offset (what a read_committed reader gets to) up to the high watermark.
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
from streams.core.policy import load_policy
from streams.kafka.reader import assign_all, open_reader
from streams.offline.generator import generate
from streams.offline.scenarios import write_realistic
from streams.ops.verify import DecisionKey, decision_key
from streams.settings import Settings
from tests.integration.conftest import Env, WorkerProc
from tests.integration.live import offline_keys, wait_logged
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
pytestmark = pytest.mark.timeout(1200)


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
    what was committed since the last. A second consumer (read_uncommitted, never
    polled) gives the high watermarks: below them and at or past the last stable
    offsets lie records of transactions still open."""

    def __init__(self, settings: Settings) -> None:
        # a short fetch wait: a decision committed is seen within ~0.1 s
        self.consumer = open_reader(settings, fetch_max_wait_ms=50)
        self.raw = open_reader(settings, isolation_level="read_uncommitted")
        self.roles = {settings.topics[r]: r for r in DECISION_ROLES}
        self.tps: list[TopicPartition] = assign_all(self.consumer, settings, self.roles)
        self.consumer.seek_to_beginning(*self.tps)
        self.keys: list[DecisionKey] = []
        self.where: list[tuple[TopicPartition, int]] = []  # each record's partition, offset
        # per output partition: a decision goes to its customer's partition (murmur2, as
        # the input), so this counts what the owner of that input partition committed
        self.by_partition: Counter[int] = Counter()

    @property
    def seen(self) -> int:
        return len(self.keys)

    def poll(self, wait_ms: int = 100) -> int:
        """Read what is committed now (waiting at most ``wait_ms`` for it); the count
        seen."""
        batch = self.consumer.poll(timeout_ms=wait_ms, max_records=100_000)
        for tp, recs in batch.items():
            role = self.roles[tp.topic]
            self.keys.extend(decision_key(role, r.value) for r in recs)
            self.where.extend((tp, r.offset) for r in recs)
            self.by_partition[tp.partition] += len(recs)
        return self.seen

    def on(self, partitions: set[int]) -> int:
        """Decisions seen on these partitions (of both output topics)."""
        return sum(self.by_partition[p] for p in partitions)

    def wait_for(
        self,
        done: Callable[[int], bool],
        worker: WorkerProc,
        timeout: float = 120,
        every_ms: int = 100,
    ) -> int:
        """Poll (every ``every_ms`` at most) until ``done(seen)``; fails if ``worker``
        exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while not done(self.poll(every_ms)):
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

    def in_flight(self, partitions: set[int] | None = None) -> dict[TopicPartition, range]:
        """Per output partition (of ``partitions``, default all), the offsets of decisions
        in a transaction still open: from the last stable offset to the high watermark.
        Output partition p is written only by partition p's transactional producer, so
        this is that producer's open transaction."""
        tps = [tp for tp in self.tps if partitions is None or tp.partition in partitions]
        stable = self.consumer.end_offsets(tps)
        high = self.raw.end_offsets(tps)
        return {tp: range(stable[tp], high[tp]) for tp in tps if stable[tp] < high[tp]}

    def read_in(self, ranges: dict[TopicPartition, range], first: int, last: int) -> int:
        """How many of the records read ``first``-th to ``last``-th lie in ``ranges``."""
        return sum(1 for tp, off in self.where[first:last] if tp in ranges and off in ranges[tp])

    def close(self) -> None:
        self.consumer.close()
        self.raw.close()


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


def kill_at_shares(
    ts_env: Env,
    out: Visible,
    owed: int,
    policy: Path | None = None,
    shares: tuple[float, ...] = (0.2, 0.5, 0.8),
) -> list[str]:
    """A worker per share, killed with SIGKILL once that share of the ``owed`` decisions
    is visible, it made some of them, and a transaction of its is open (or all are
    visible). Gives each worker's log as of its recovery."""
    logs: list[str] = []
    for share in shares:
        worker = ts_env.worker(policy=policy)
        wait_logged(worker, "state recovered")
        logs.append(worker.log.read_text(errors="replace"))
        at_start = len(out.drain())

        def due(n: int, since: int = at_start, share: float = share) -> bool:
            return n == owed or (n >= share * owed and n > since and bool(out.in_flight()))

        if at_start < owed:
            out.wait_for(due, worker, every_ms=20)
        worker.kill()
    return logs


KILL_AT = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Shares of the owed decisions visible when each worker is killed."""


def test_five_kill_9_through_a_3000_customer_backlog_write_nothing_twice(
    ts_env: Env, backlog: History, visible: Callable[[], Visible]
) -> None:
    """The whole history is in the topics before the first worker starts; each worker is
    killed at the first look (every 20 ms) that shows the share of the decisions visible,
    some of them made visible by that worker, and more of its decisions in open
    transactions, with the backlog still being read. Decisions become visible in bursts
    (a commit cycle's worth; the last ~20% at once when the input goes idle), so a kill
    can land past its share; once every decision is visible, the next worker is killed
    as soon as it has recovered (a crash with nothing left to do must not publish
    anything again either)."""
    began = time.monotonic()
    _fresh(ts_env, "e5")
    produced = _produce(ts_env, backlog.path, rate=None)
    owed = len(backlog.offline)
    out = visible()
    kills: list[str] = []
    left_open: list[dict[TopicPartition, range]] = []
    for share in KILL_AT:
        worker = ts_env.worker()
        wait_logged(worker, "state recovered")
        # its claim aborted what the last worker left open: everything that worker
        # committed is visible now, and counted before this one's share
        at_start = len(out.drain())

        def due(n: int, since: int = at_start, share: float = share) -> bool:
            return n == owed or (n >= share * owed and n > since and bool(out.in_flight()))

        # every 20 ms: a burst of decisions stays open for a commit interval at most
        at = out.wait_for(due, worker, every_ms=20) if at_start < owed else at_start
        worker.kill()
        # what the kill left open (the next worker's claim aborts it)
        left_open.append(out.in_flight())
        n_open = sum(len(r) for r in left_open[-1].values())
        kills.append(f"{share:.0%}: {at} ({at / owed:.0%}, +{at - at_start}, {n_open} open)")
    last = ts_env.worker()
    _finish(ts_env, last, backlog.offline)
    assert last.proc.returncode == 0, last.tail()  # stopped cleanly
    result = _check(ts_env, backlog.offline, "5x kill -9 through a backlog", produced)
    out.drain()
    # a commit already on its way at the kill can still complete; anything else open
    # at a kill must never be seen
    shown = [out.read_in(ranges, 0, out.seen) for ranges in left_open]
    print(
        f"kills at: decisions visible (share; made visible by the killed worker; decision "
        f"records left in open transactions) of {owed}: {'; '.join(kills)}; of those left "
        f"open, visible later: {shown}; {time.monotonic() - began:.0f} s"
    )
    assert result.decisions == owed, result.render()


# ------------------------------------------------------------------ a zombie

_RECOVERED = re.compile(r"state recovered: partitions \[([0-9, ]*)\]")
_ENDING = re.compile(r"fenced|abort|crashed reason|stopping:|exiting", re.IGNORECASE)
STOP_SETTLED_S = 0.3
"""After SIGSTOP, how long an open transaction of the stopped worker must stay open to
count as left open by it: a commit it sent just before stopping completes within
milliseconds (and records it had sent land)."""


def _owned(worker: WorkerProc, since: int = 0) -> set[int] | None:
    """The partitions of the worker's last recovery logged after byte ``since`` of its
    log, or None when none was."""
    found = _RECOVERED.findall(worker.log.read_bytes()[since:].decode(errors="replace"))
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None


def _wait(what: str, done: Callable[[], bool], *alive: WorkerProc, timeout: float = 60) -> None:
    """Poll ``done`` until true; fails if one of ``alive`` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not done():
        for w in alive:
            assert w.proc.poll() is None, f"waiting for {what}:\n{w.tail()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n" + "\n".join(
            w.tail(20) for w in alive
        )
        time.sleep(0.02)  # polling the workers' logs or the broker, bounded by the deadline


def _stop_with_decisions_open(
    worker: WorkerProc, out: Visible, partitions: set[int], timeout: float = 60
) -> dict[TopicPartition, range]:
    """SIGSTOP ``worker`` while its transactions on ``partitions`` hold decisions, and
    give their offsets. If the transaction ends anyway (its commit was already on its
    way), the worker goes on (SIGCONT) and is stopped at its next open one."""
    deadline = time.monotonic() + timeout
    while True:

        def open_now() -> bool:
            return bool(out.in_flight(partitions))

        _wait(
            "decisions in an open transaction",
            open_now,
            worker,
            timeout=deadline - time.monotonic(),
        )
        os.kill(worker.proc.pid, signal.SIGSTOP)
        stopped = out.in_flight(partitions)
        settled = time.monotonic() + STOP_SETTLED_S
        while stopped and time.monotonic() < settled:
            now = out.in_flight(partitions)  # the same transaction: the same first offset
            stopped = {
                tp: now[tp] for tp, r in stopped.items() if tp in now and now[tp].start == r.start
            }
            time.sleep(0.02)  # polling the broker while the commit could still land
        if stopped:
            return stopped
        os.kill(worker.proc.pid, signal.SIGCONT)


def test_a_zombie_worker_writes_nothing_visible_after_it_was_fenced(
    ts_env: Env, backlog: History, visible: Callable[[], Visible]
) -> None:
    """A and B share the partitions while input arrives; A is paused (SIGSTOP) with
    decisions in open transactions, past the session timeout; B takes A's partitions
    (initialising their transactional ids fences A and aborts what it left open) and goes
    on; then A resumes (SIGCONT). Nothing of A's may become visible after that: none of
    the decisions it held open, no decision written twice; and A learns it was fenced
    (or stops otherwise) instead of committing."""
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
    a_had = _owned(a) or set()
    held = _stop_with_decisions_open(a, out, a_had)
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
    # B goes on: it decides again what A had not committed
    out.wait_for(lambda n: n > at_takeover or n == owed.total(), b)
    before = Counter(k[0] for k in out.drain())
    n_before = out.seen
    a_mark = a.log.stat().st_size
    os.kill(a.proc.pid, signal.SIGCONT)
    resumed_at = time.monotonic()

    def a_done() -> bool:
        tail = a.log.read_bytes()[a_mark:].decode(errors="replace")
        return a.proc.poll() is not None or "state recovered" in tail

    _wait("A exiting (or rejoining) after SIGCONT", a_done, b, timeout=60)
    a_took = time.monotonic() - resumed_at
    a_after = a.log.read_bytes()[a_mark:].decode(errors="replace")
    a_exit = a.proc.poll()
    a_rejoined = _owned(a, a_mark) if a_exit is None else None
    endings = [line[:300] for line in a_after.splitlines() if _ENDING.search(line)]
    _finish(ts_env, b, backlog.offline)
    assert b.proc.returncode == 0, b.tail()  # stopped cleanly
    if a.proc.poll() is None:
        a.stop()
    else:
        a.fh.close()
    result = _check(ts_env, backlog.offline, "zombie fenced", produced)
    after = Counter(k[0] for k in out.drain()) - before
    again = sum(min(n, max(0, before[m] + n - owed[m])) for m, n in after.items())
    open_at_stop = sum(len(r) for r in held.values())
    shown_before = out.read_in(held, 0, n_before)  # committed before A was resumed
    shown_after = out.read_in(held, n_before, out.seen)  # ... after: the zombie's
    fenced = any("fenced" in line.lower() for line in endings)
    print(
        f"zombie: A owned {sorted(a_had)}, stopped with {open_at_stop} decision records in "
        f"open transactions ({shown_before} of them visible before SIGCONT, {shown_after} "
        f"after); B owned every partition {took_over:.1f} s later; {before.total()} "
        f"decisions visible before SIGCONT, {after.total()} after (decided again: {again}); "
        "after SIGCONT A "
        + (
            f"exited {a_exit} within {a_took:.1f} s"
            if a_exit is not None
            else f"rejoined with partitions {sorted(a_rejoined or ())} within {a_took:.1f} s"
        )
        + f" (logged 'fenced': {fenced}); {time.monotonic() - began:.0f} s\n"
        + "A's log after SIGCONT (fenced/abort/crash/stopping lines):\n  "
        + "\n  ".join(endings[-8:])
    )
    assert shown_before == 0 and shown_after == 0, (held, shown_before, shown_after)
    assert again == 0, (again, result.render())
    assert (a_exit is not None and a_exit != 0) or fenced, (
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


def test_three_kill_9_through_a_blast_backlog_with_the_campaign_gate_on(
    ts_env: Env, tmp_path: Path, visible: Callable[[], Visible]
) -> None:
    """2,000 realistic customers whose campaigns include a recommender falling back to
    identical content and a looping journey, under ``policies/blast.toml``: every
    partition's campaign replica is killed with its worker three times while counts are
    on their way between partitions. The decisions are the offline replay's, trips and
    expiries included: none missing, none different, none twice."""
    policy = Path(__file__).resolve().parents[2] / "policies" / "blast.toml"
    path, truth = tmp_path / "blast.jsonl", tmp_path / "blast.truth.jsonl"
    write_realistic(path, truth, 2_000, seed=11, blast=True)
    offline = offline_keys(path, PARTITIONS, policy=load_policy(policy))
    assert sum(1 for d in offline if d[2] == "campaign_held_expired") > 300
    _fresh(ts_env, "eb")
    produced = _produce(ts_env, path, rate=None)
    owed = len(offline)
    kill_at_shares(ts_env, visible(), owed, policy)
    last = ts_env.worker(policy=policy)
    _finish(ts_env, last, offline)
    result = _check(ts_env, offline, "3x kill -9 with the campaign gate on", produced)
    assert result.decisions == owed, result.render()
