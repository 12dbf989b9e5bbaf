"""Which input offsets may be committed, and what a commit carries.

The delivery promise is an order: a decision's output is in the state (its outbox)
before anything else, that state is acknowledged by the broker before the input
offset that caused it is committed. This module enforces the second half. Every
write a record's handling causes (changelog records, re-routed copies, dead letters,
progress markers) is a future; the record's offset becomes committable only when
all of them have resolved, in read order.

Why not faust's own acks: faust acks a record its stream skips while flow control
is suspended (stop, rebalance) and the record in hand when the agent is cancelled,
so an offset the worker never processed can be committed; and its producer flush,
which it trusts before a commit, returns while a buffered changelog record is still
being handed to the client (it polls per record and does not count the one in
hand). Both were seen as lost decisions after ``kill -9`` and SIGTERM. The worker
therefore subscribes with acks off and commits through this ledger.

A commit also carries the frontier of its stream at that offset (Kafka Streams keeps
partition time in commit metadata the same way): after a restart or a move to
another worker the clock resumes exactly where the committed records left it, so a
record read again gets the same arrival frontier as in an uninterrupted run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

Partition = tuple[str, int]  # (topic, partition)

META_VERSION = 1


class WriteFailed(RuntimeError):
    """A write the state or an offset depends on was rejected by the broker: the
    worker's memory is ahead of what Kafka holds, so it must stop and recover."""


@dataclass(slots=True)
class _Entry:
    tp: Partition
    next_offset: int
    meta: str
    writes: list[asyncio.Future[Any]]


class Checkpoints:
    """Read order of records with the writes each caused; what is safe to commit."""

    __slots__ = ("_committed", "_epoch", "_flushing", "_open", "_open_epoch", "_queue", "_safe")

    def __init__(self) -> None:
        self._open: list[asyncio.Future[Any]] = []  # writes of the record in hand (or timers)
        # resolves when the next write-back flush of the state table is acknowledged
        self._epoch: asyncio.Future[None] | None = None
        self._open_epoch: asyncio.Future[None] | None = None  # _epoch, once in _open
        self._flushing: set[asyncio.Future[None]] = set()  # flushes sent, not yet acknowledged
        self._queue: deque[_Entry] = deque()
        self._safe: dict[Partition, tuple[int, str]] = {}
        self._committed: dict[Partition, int] = {}

    def track(self, write: asyncio.Future[Any]) -> None:
        """A write caused by the record being handled now (or by a timer: it then
        holds back the next record's offset, which costs nothing)."""
        self._open.append(write)

    def close(self, tp: Partition, next_offset: int, meta: str = "") -> None:
        """The record before ``next_offset`` on ``tp`` is handled; its writes are known."""
        self._queue.append(_Entry(tp, next_offset, meta, self._open))
        self._open = []
        self._open_epoch = None

    def state_pending(self) -> None:
        """State was changed in memory and reaches the changelog at the next flush: the
        record in hand (or the next one, for a timer's change) waits for that flush. The
        flush is taken now, at the change, not when the record closes: a flush may
        start while the record still awaits its other writes."""
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = asyncio.get_running_loop().create_future()
        if self._open_epoch is not epoch:
            self._open.append(epoch)
            self._open_epoch = epoch

    def flush_begins(self) -> asyncio.Future[None] | None:
        """A write-back flush starts: the changes made so far wait for it (returned; hand
        it to ``flushed``), changes from now on for the next one."""
        epoch, self._epoch = self._epoch, None
        if epoch is not None:
            self._flushing.add(epoch)
            epoch.add_done_callback(self._flushing.discard)
        return epoch

    @staticmethod
    def flushed(epoch: asyncio.Future[None] | None, writes: list[asyncio.Future[Any]]) -> None:
        """The flush's writes are sent: ``epoch`` resolves when all are acknowledged, and
        fails (failing every record waiting for it) if one is rejected."""
        if epoch is None:
            return
        if not writes:
            epoch.set_result(None)
            return
        left = [len(writes)]

        def one_done(w: asyncio.Future[Any]) -> None:
            if epoch.done():
                return
            if w.cancelled() or w.exception() is not None:
                epoch.set_exception(WriteFailed(f"a state write-back was rejected: {_reason(w)}"))
                return
            left[0] -= 1
            if not left[0]:
                epoch.set_result(None)

        for w in writes:
            w.add_done_callback(one_done)

    def _advance(self) -> None:
        queue, safe = self._queue, self._safe
        while queue:
            head = queue[0]
            for w in head.writes:
                if not w.done():
                    return
            for w in head.writes:
                _check(w, head.tp, head.next_offset - 1)
            queue.popleft()
            safe[head.tp] = (head.next_offset, head.meta)

    def committable(self) -> dict[Partition, tuple[int, str]]:
        """Offsets (with metadata) whose records' writes are all acknowledged and that
        are newer than the last commit. Raises ``WriteFailed`` if a write failed."""
        self._advance()
        done = self._committed
        return {tp: v for tp, v in self._safe.items() if v[0] > done.get(tp, -1)}

    def take_handled(self) -> dict[Partition, tuple[int, str]]:
        """With transactions: the newest offset (with metadata) handled per partition,
        whatever its writes' state. Their writes are in the transaction that commits
        these offsets, so they become visible together or not at all."""
        out: dict[Partition, tuple[int, str]] = {}
        for e in self._queue:
            out[e.tp] = (e.next_offset, e.meta)
        self._queue.clear()
        return out

    def committed(self, offsets: dict[Partition, tuple[int, str]]) -> None:
        for tp, (offset, _) in offsets.items():
            if offset > self._committed.get(tp, -1):
                self._committed[tp] = offset

    def forget(self, tps: Iterable[Partition]) -> None:
        """Partitions revoked: their offsets are no longer ours to commit (whoever reads
        them next skips what our durable state already applied)."""
        gone = set(tps)
        self._queue = deque(e for e in self._queue if e.tp not in gone)
        for tp in gone:
            self._safe.pop(tp, None)
            self._committed.pop(tp, None)

    @property
    def pending(self) -> int:
        """Records handled whose writes are not all acknowledged yet."""
        return len(self._queue)

    async def durable(self) -> None:
        """Wait until every write sent so far is acknowledged (raises ``WriteFailed``).
        State not yet written back is not waited for: flush first."""
        epoch = self._epoch
        writes = [w for e in self._queue for w in e.writes if w is not epoch]
        writes += [w for w in self._open if w is not epoch]
        writes += self._flushing  # e.g. a timer's changes, in no record yet
        waiting = [w for w in writes if not w.done()]
        if waiting:
            await asyncio.wait(waiting)
        for w in writes:
            _check(w, None, None)


def _check(write: asyncio.Future[Any], tp: Partition | None, offset: int | None) -> None:
    if write.cancelled():
        raise WriteFailed(f"a write was cancelled{_where(tp, offset)}")
    exc = write.exception()
    if isinstance(exc, WriteFailed):
        raise WriteFailed(f"{exc}{_where(tp, offset)}") from exc
    if exc is not None:
        raise WriteFailed(
            f"the broker rejected a write{_where(tp, offset)}: {type(exc).__name__}: {exc}"
        ) from exc


def _reason(write: asyncio.Future[Any]) -> str:
    if write.cancelled():
        return "cancelled"
    exc = write.exception()
    return f"{type(exc).__name__}: {exc}"


def _where(tp: Partition | None, offset: int | None) -> str:
    return "" if tp is None else f" made while handling {tp[0]}[{tp[1]}]@{offset}"


def frontier_meta(frontier: int | None) -> str:
    """Commit metadata for an input stream: its frontier after the committed records."""
    return orjson.dumps({"ts": META_VERSION, "frontier": frontier}).decode()


def parse_frontier(meta: str | None) -> int | None:
    """The frontier in commit metadata written by ``frontier_meta``; None when absent
    (no commit yet, or written by something else: the clock then starts empty)."""
    if not meta:
        return None
    try:
        data = orjson.loads(meta)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("ts") != META_VERSION:
        return None
    f = data.get("frontier")
    return f if isinstance(f, int) and not isinstance(f, bool) else None
