"""The offline replay's pass over a history file, through the worker's processor.

Offline replay gives the decisions the worker gives when the same file has
been produced, in file order, into topics of N partitions: each record
belongs to partition ``murmur2(customer_id) % N``, each (topic, partition)'s
records in file order are its stream, and each partition has its own
stream clock. One pass reads the file in order (a first, cheaper pass only
notes where each stream ends, so a stream with nothing more to come counts
as idle, as a caught-up partition does live). Memory is bounded by customer
state, not by the file. Because a decision sees only what its streams had
delivered in time (``rules.View``), the order in which the worker happens to
interleave topics, partitions or sweeps cannot change it, and neither can
this replay's. Bad lines and unreadable values are counted and reported by
line number; processing continues.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from streams.contract.decode import Unreadable
from streams.contract.history import BadLine, HistoryRecord, iter_lines, parse_line
from streams.contract.partitioning import partition_for
from streams.contract.render import late_line, offline_line
from streams.core.campaigns import Order, Trip
from streams.core.clock import iso
from streams.core.engine import Engine
from streams.core.outcomes import Decided, LateFinding, Output, Refused
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.processing.processor import Processor
from streams.processing.watermarks import Watermarks


@dataclass
class ReplaySummary:
    records: int = 0
    candidates: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    late: int = 0
    late_unchecked: int = 0  # late checks that may have met forgotten state (see core.late)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # line, topic, error
    failed: list[tuple[str, str]] = field(default_factory=list)  # message id, error
    seconds: float = 0.0
    trips: list[Trip] = field(default_factory=list)  # campaigns tripped ([blast] on)
    campaign_held: int = 0  # candidates held by a trip at some point

    def render(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0.0
        lines = [
            f"replayed {self.records} records ({self.candidates} candidates) in "
            f"{self.seconds:.2f}s ({rate:,.0f} records/s)",
            "actions: "
            + ", ".join(f"{a}={self.actions.get(a, 0)}" for a in ("send", "rewrite", "suppress")),
            "per rule:",
        ]
        if self.rules:
            width = max(len(r) for r in self.rules)
            for rule, n in sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {rule:<{width}}  {n}")
        else:
            lines.append("  (no rule fired)")
        if self.trips:
            lines.append(
                f"campaign trips: {len(self.trips)} ({self.campaign_held} candidates held)"
            )
            for t in self.trips[:20]:
                lines.append(f"  {t.campaign} at {iso(t.at_ms)} ({t.kind}): {t.summary()}; "
                             f"{t.held} held")  # fmt: skip
        if self.late:
            lines.append(f"late evidence: {self.late}")
        if self.late_unchecked:
            lines.append(
                f"late checks that may have met forgotten state: {self.late_unchecked} (events"
                " read more than the send window behind their stream, messages read after"
                " their deadline had passed on theirs)"
            )
        if self.failed:
            lines.append(f"not decided (dead-lettered): {len(self.failed)}")
            for mid, err in self.failed[:20]:
                lines.append(f"  {mid}: {err}")
        bad = len(self.bad_lines) + len(self.unreadable)
        if bad:
            lines.append(f"unreadable: {bad} (kept going)")
            for ln, err in self.bad_lines[:20]:
                lines.append(f"  line {ln}: {err}")
            for ln, topic, err in self.unreadable[:20]:
                lines.append(f"  line {ln} ({topic}): {err}")
            if bad > 40:
                lines.append(f"  ... and {bad - 40} more")
        return "\n".join(lines)


def unkeyed(partitions: int) -> int:
    """A line's mark in a first pass's per-line partitions: a record with no customer."""
    return partitions


def no_record(partitions: int) -> int:
    """The mark of a blank or unreadable line."""
    return partitions + 1


def first_pass(
    path: str | Path, partitions: int, per_line: bool = False
) -> tuple[dict[tuple[str, int], int], array[int] | None]:
    """(topic, partition) -> line number of its last record; with ``per_line``, also each
    line's partition (or the marks ``unkeyed``, ``no_record``: above every partition),
    indexed by line number: what lets a parallel replay skip the lines of partitions it
    does not decide without parsing them. One byte per line up to 254 partitions, two
    beyond (65,534 at most)."""
    last: dict[tuple[str, int], int] = {}
    parts: array[int] | None = None
    nothing = no_record(partitions)
    if per_line:
        if nothing > 0xFFFF:
            raise ValueError(f"a parallel replay takes at most 65,534 partitions, not {partitions}")
        parts = array("B" if nothing <= 0xFF else "H", [nothing])
    for i, line in iter_lines(path):
        rec = parse_line(i, line, full=False)
        mark = nothing
        if isinstance(rec, HistoryRecord):
            if rec.customer_id is None:
                mark = unkeyed(partitions)
            else:
                mark = partition_for(rec.customer_id, partitions)
                last[(rec.topic, mark)] = i
        if parts is not None:
            parts.append(mark)
    return last, parts


TELL_EVERY = 256
"""Records between two hand-overs of every partition's frontiers to the others, offline
with identity links (``_FilePass._tell_all``)."""

DECIDED, LATE, FAILED = 0, 1, 2
"""What an output row is: a decision line, a late-evidence line, a failure."""


def output_row(o: Output) -> tuple[int, Any]:
    """An output as the replay writes it (a parallel share passes the row on as is)."""
    if isinstance(o, Decided):
        return DECIDED, offline_line(o)
    if isinstance(o, LateFinding):
        return LATE, late_line(o)
    if isinstance(o, Refused):  # an identity link the book refused
        return FAILED, [o.link.event_id, o.error]
    # dead-lettered by the worker too: over a state limit, or its decision raised
    return FAILED, [o.candidate.message_id, o.error]


def tally(
    summary: ReplaySummary, out: IO[bytes] | None, late_out: IO[bytes] | None, kind: int,
    value: Any,
) -> None:  # fmt: skip
    """Count an output row in the summary and write it where it goes."""
    if kind == DECIDED:
        summary.actions[value["action"]] += 1
        if value["rule"]:
            summary.rules[value["rule"]] += 1
        if out is not None:
            out.write(orjson.dumps(value) + b"\n")
    elif kind == LATE:
        summary.late += 1
        if late_out is not None:
            late_out.write(orjson.dumps(value) + b"\n")
    else:
        summary.failed.append((value[0], value[1]))


FLUSHED = 0
"""The line number ``decide_file`` passes with the outputs of the final flush."""


def decide_file(
    path: str | Path,
    policy: Policy,
    partitions: int,
    ends: dict[tuple[str, int], int],
    summary: ReplaySummary,
    emit: Callable[[int, list[Output]], None],
    progress: Callable[[int], None] | None = None,
    sweep_every: int = 50_000,
    history: PolicyHistory | None = None,
    marks: Container[int] | None = None,
    parts: array[int] | None = None,
    orders: Iterable[Order] = (),
) -> None:
    """The offline replay's one pass: every record through the processor (the worker's
    read, apply and release steps), outputs to ``emit(line number, outputs)``. With
    ``parts`` (a first pass's per-line partitions), only the lines whose mark is in
    ``marks`` are read: one process's share of a parallel replay. Partitions share
    nothing, so a share decides its partitions exactly as the whole file does."""
    run = _FilePass(policy, partitions, ends, summary, emit, progress, history, orders)
    nothing = no_record(partitions)
    seen = 0  # records of the whole file so far: sweeps at the same records as one process
    share = parts is not None and marks is not None
    for i, line in iter_lines(path):
        if share:
            assert parts is not None and marks is not None
            mark = parts[i]
            if mark != nothing:
                seen += 1
            if mark not in marks:
                if sweep_every and mark != nothing and seen % sweep_every == 0:
                    run.sweep()
                continue
        if run.line(i, line) and sweep_every:
            if (seen if share else summary.records) % sweep_every == 0:
                run.sweep()
    emit(FLUSHED, run.processor.flush(0))
    summary.late_unchecked += run.engine.counts["late_unchecked"]
    if run.engine.gate is not None:
        summary.trips = list(run.engine.gate.book.trips)
        summary.campaign_held = run.engine.counts["campaign_held"]


class _FilePass:
    """The state of one pass: the processor over a dict store, the watermarks, and the
    customers' partitions.

    A record's wall clock is its record time: what a worker reading the file as it was
    produced would see, so ``held_ms`` and idle releases need no real clock."""

    def __init__(
        self,
        policy: Policy,
        partitions: int,
        ends: dict[tuple[str, int], int],
        summary: ReplaySummary,
        emit: Callable[[int, list[Output]], None],
        progress: Callable[[int], None] | None,
        history: PolicyHistory | None,
        orders: Iterable[Order] = (),
    ) -> None:
        # Identity links put a customer's facts on other partitions: each partition's stream
        # time then waits for every other partition's streams, as the worker's does
        self.linked = partitions > 1 and any(t == "identities" for t, _p in ends)
        self.engine = Engine(policy, MemoryStore(), partitions, rerouted=self.linked,
                             history=history, orders=orders)  # fmt: skip
        self.processor = Processor(self.engine, {k: k for k in INPUT_KINDS}, lambda _t: partitions)
        self.watermarks = Watermarks(self.processor, partitions, 0.0, 0.0, None)
        self.partitions = partitions
        self._stamp = 0
        self._told = 0
        self.ends = ends
        self.summary = summary
        self.emit = emit
        self.progress = progress
        for p in range(partitions):
            for topic in INPUT_KINDS:
                if (topic, p) not in ends:
                    self.watermarks.ended(p, topic)
                    self._tell(p, topic)
        # Customers come back: their partition is looked up, not hashed again (twice a
        # record). One entry per customer, as the engine holds one state per customer.
        self._known: dict[str, int] = {}

    def partition_of(self, cid: str) -> int:
        p = self._known.get(cid)
        if p is None:
            p = self._known[cid] = partition_for(cid, self.partitions)
        return p

    def line(self, i: int, line: bytes) -> bool:
        """One line of the file; whether it held a record."""
        summary, processor = self.summary, self.processor
        rec = parse_line(i, line)
        if rec is None:
            return False
        if isinstance(rec, BadLine):
            summary.bad_lines.append((rec.line_no, rec.error))
            return False
        summary.records += 1
        record_ms = rec.record_ms if rec.record_ms is not None else (rec.event_ms or 0)
        part = None if rec.customer_id is None else self.partition_of(rec.customer_id)
        parsed = processor.read(rec.topic, rec.value, record_ms, record_ms)
        if isinstance(parsed, Unreadable):
            summary.unreadable.append((rec.line_no, rec.topic, parsed.error))
        else:
            part = self.partition_of(parsed.customer_id)
            if parsed.kind == "outbound":
                summary.candidates += 1
            self.emit(i, processor.apply(part, parsed, record_ms))
        if part is not None:
            if self.ends.get((rec.topic, part)) == rec.line_no:
                self.watermarks.ended(part, rec.topic)
            self.emit(i, processor.release(part, record_ms))
            if self.linked:
                self._told += 1
                if self._told >= TELL_EVERY or self.ends.get((rec.topic, part)) == rec.line_no:
                    self._tell_all(i, record_ms)
        return True

    def _tell_all(self, i: int, record_ms: int) -> None:
        """Every partition learns where every other partition's streams stand, and decides
        what that allows. Every ``TELL_EVERY`` records, not after each: a partition that
        has not heard the newest frontiers yet only decides later, never otherwise."""
        self._told = 0
        for p in range(self.partitions):
            for topic in INPUT_KINDS:
                self._tell(p, topic)
        for q in range(self.partitions):
            self.emit(i, self.processor.release(q, record_ms))

    def _tell(self, partition: int, topic: str) -> None:
        """Every other partition learns where this stream of ``partition`` stands (what the
        worker's progress markers carry)."""
        if not self.linked:
            return
        frontier, idle = self.engine.clock(partition).local()[topic]
        self._stamp += 1
        for q in range(self.partitions):
            if q != partition:
                self.engine.clock(q).set_remote((topic, partition), frontier, idle, self._stamp)

    def sweep(self) -> None:
        # Late findings depend on what a sweep dropped: a parallel share sweeps at the
        # same records of the file as one process does (see ``decide_file``).
        self.engine.sweep(self.partition_of)
        self._known.clear()  # customers the sweep forgot: the lookup must not outgrow them
        if self.progress is not None:
            self.progress(self.summary.records)
