"""The decision engine: holds candidates, decides them in deadline order.

Pure: no Kafka, no asyncio, no wall clock of its own. The worker and the
offline replay feed it the same way (``ingest`` a record, ``release`` what
stream time allows) and get the same decisions; only *when* a decision is
made differs, never *what* it is, because a candidate is decided only once
every event at or before its deadline is in state (see ``clock``).

Held candidates live inside the customer's state (so they are as durable as
the store: a changelogged table in the worker); the per-partition heap that
orders them is an index rebuilt by ``restore`` after a restart.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from streams import rules
from streams.candidate import Candidate, content_key
from streams.clock import StreamClock
from streams.policy import TRIGGERS, Policy
from streams.state import (
    ConsentFact,
    CustomerState,
    PurchaseFact,
    ReturnFact,
    SentFact,
    SessionFact,
)
from streams.topics import INPUT_ROLES

INPUT_KINDS: tuple[str, ...] = INPUT_ROLES
"""The contract's input topics by role (their configured names may differ)."""

Fact = PurchaseFact | ReturnFact | SessionFact | ConsentFact | Candidate | None


class StateStore(Protocol):
    """Where customer state lives: a dict offline, a changelogged faust table live."""

    def get(self, customer_id: str) -> CustomerState | None: ...
    def put(self, customer_id: str, state: CustomerState) -> None: ...
    def delete(self, customer_id: str) -> None: ...
    def keys(self) -> Iterable[str]: ...


class MemoryStore:
    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, CustomerState] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        return self.data.get(customer_id)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.data[customer_id] = state

    def delete(self, customer_id: str) -> None:
        self.data.pop(customer_id, None)

    def keys(self) -> Iterable[str]:
        return list(self.data)


@dataclass(slots=True)
class Decided:
    candidate: Candidate
    decision: rules.Decision
    decided_wall: int


@dataclass(slots=True)
class LateFinding:
    """An event read after a message it contradicts had already been sent."""

    sent: SentFact
    customer_id: str
    rule: str
    reason: str
    event: rules.Evidence
    late_by_ms: int  # record time of the event minus the message's deadline


Output = Decided | LateFinding


class _Partition:
    __slots__ = ("clock", "heap")

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.clock = StreamClock(kinds)
        self.heap: list[tuple[int, str, int, str]] = []  # (deadline, message_id, seq, customer)


class Engine:
    def __init__(self, policy: Policy, store: StateStore) -> None:
        self.policy = policy
        self.store = store
        self.counts: Counter[str] = Counter()
        self._parts: dict[int, _Partition] = {}
        self._seq = 0
        self._max_settle = max(policy.settle.for_trigger(t) for t in TRIGGERS)
        # Sends are looked at by duplicate_content and frequency_cap (and by late-evidence
        # checks, which therefore reach back as far as these windows and no further).
        self._send_window = max(
            policy.rules.duplicate_content.window, policy.rules.frequency_cap.window
        )

    # ------------------------------------------------------------ partitions

    def part(self, partition: int) -> _Partition:
        p = self._parts.get(partition)
        if p is None:
            p = self._parts[partition] = _Partition(INPUT_KINDS)
        return p

    def clock(self, partition: int) -> StreamClock:
        return self.part(partition).clock

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the in-memory index of partitions this worker no longer owns."""
        for p in partitions:
            self._parts.pop(p, None)

    def held_count(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self.part(partition).heap)
        return sum(len(p.heap) for p in self._parts.values())

    def restore(self, partition_of: Callable[[str], int]) -> int:
        """Start over after a recovery: deadline heaps rebuilt from the held candidates in
        the store, stream clocks empty. Clocks are not kept across a rebalance: the
        consumer re-reads from the committed offsets, so an old frontier or idle flag
        could release a candidate before records it has not seen again."""
        self._parts.clear()
        n = 0
        for cid in self.store.keys():
            state = self.store.get(cid)
            if state is None:
                continue
            for c in state.held:
                heapq.heappush(
                    self.part(partition_of(cid)).heap, (c.deadline, c.message_id, c.seq, cid)
                )
                self._seq = max(self._seq, c.seq + 1)
                n += 1
        return n

    # ------------------------------------------------------------ input

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def ingest(
        self,
        partition: int,
        kind: str,
        customer_id: str,
        event_ms: int,
        fact: Fact,
        record_ms: int,
        source: int = -1,
    ) -> list[Output]:
        """Apply one valid input record; return late findings it reveals (if any).

        ``source`` is the record's offset in its partition (-1 offline). A record
        at or below the highest offset already applied for this customer on this
        topic was read again after a crash or a rebalance (its effects reached the
        changelog, its offset commit did not): it is skipped and counted, so a
        redelivery never becomes a second decision or a bogus ``duplicate_message``.
        """
        part = self.part(partition)
        part.clock.observe(kind, event_ms)
        if fact is None:  # e.g. a session "ended": moves time, changes no fact
            return []
        state = self.store.get(customer_id) or CustomerState()
        if source >= 0:
            if source <= state.applied.get(kind, -1):
                self.counts["redelivered"] += 1
                return []
            state.applied[kind] = source
        out: list[Output] = []
        if isinstance(fact, Candidate):
            fact.seq = self.next_seq()
            state.held.append(fact)
            heapq.heappush(part.heap, (fact.deadline, fact.message_id, fact.seq, customer_id))
            self.counts["held"] += 1
        else:
            if isinstance(fact, PurchaseFact):
                added = state.add_purchase(fact)
            elif isinstance(fact, ReturnFact):
                added = state.add_return(fact)
            elif isinstance(fact, SessionFact):
                added = state.add_session(fact)
            else:
                added = state.add_consent(fact)
            if not added:
                self.counts["duplicate_event"] += 1
            elif state.sent:
                out.extend(self._late(state, customer_id, kind, fact, record_ms))
        self._prune(self._horizon(part), state)
        self.store.put(customer_id, state)
        return out

    # ------------------------------------------------------------ release

    def release(self, partition: int, wall_ms: int) -> list[Output]:
        """Decide every held candidate that stream time allows, in deadline order."""
        part = self.part(partition)
        out: list[Output] = []
        heap, clock = part.heap, part.clock
        if not heap or not clock.releasable(heap[0][0]):
            return out
        # Popping only raises the heap minimum, so this horizon stays safe for the whole loop.
        horizon = self._horizon(part)
        while heap and clock.releasable(heap[0][0]):
            out.extend(self._decide_top(part, wall_ms, horizon))
        return out

    def release_idle(self, partition: int, wall_ms: int) -> list[Output]:
        """All topics caught up and quiet: release by wall clock (receipt + settle).

        Stops at the first candidate not yet due, so deadline order is kept.
        """
        part = self.part(partition)
        out: list[Output] = []
        if not part.clock.all_idle:
            return out
        out.extend(self.release(partition, wall_ms))
        while part.heap:
            _d, _mid, seq, cid = part.heap[0]
            cand = self._held(cid, seq)
            if (
                cand is not None
                and cand.received_wall + self.policy.settle.for_trigger(cand.trigger) > wall_ms
            ):
                break
            out.extend(self._decide_top(part, wall_ms, None))
        return out

    def flush(self, wall_ms: int) -> list[Output]:
        """End of input (offline): decide everything still held, in deadline order."""
        out: list[Output] = []
        for part in self._parts.values():
            while part.heap:
                out.extend(self._decide_top(part, wall_ms, None))
        return out

    def _held(self, customer_id: str, seq: int) -> Candidate | None:
        state = self.store.get(customer_id)
        if state is None:
            return None
        return next((c for c in state.held if c.seq == seq), None)

    def _decide_top(self, part: _Partition, wall_ms: int, horizon: int | None) -> Iterator[Output]:
        _deadline, _mid, seq, cid = heapq.heappop(part.heap)
        state = self.store.get(cid)
        if state is None:
            return
        idx = next((i for i, c in enumerate(state.held) if c.seq == seq), None)
        if idx is None:
            return
        cand = state.held.pop(idx)
        decision = rules.decide(state, cand, self.policy)
        if cand.message_id not in state.decided:
            state.decided[cand.message_id] = (cand.created_at, cand.deadline)
        if decision.action != "suppress":
            state.sent.append(
                SentFact(
                    cand.message_id,
                    cand.created_at,
                    cand.deadline,
                    cand.trigger,
                    cand.channel,
                    cand.category,
                    content_key(cand.trigger, cand.channel, decision.skus, cand.payload_hash),
                    decision.skus,
                    cand.cart_updated_at,
                    cand.order_id,
                )
            )
        self.counts[decision.action] += 1
        if decision.rule:
            self.counts[f"rule:{decision.rule}"] += 1
        self._prune(horizon, state)
        self.store.put(cid, state)
        yield Decided(cand, decision, wall_ms)

    # ------------------------------------------------------------ late evidence

    def _late(
        self,
        state: CustomerState,
        customer_id: str,
        kind: str,
        fact: PurchaseFact | ReturnFact | SessionFact | ConsentFact,
        record_ms: int,
    ) -> Iterator[LateFinding]:
        for sent in state.sent:
            if sent.deadline < fact.t:
                continue
            again = rules.decide(state, sent, self.policy, only=rules.EVENT_RULES)
            if again.action == "send" or again.rule is None:
                continue
            if not any(e[0] == kind and e[1] == fact.event_id for e in again.evidence):
                continue
            self.counts["late_evidence"] += 1
            yield LateFinding(
                sent,
                customer_id,
                again.rule,
                again.reason or "",
                (kind, fact.event_id, fact.t),
                record_ms - sent.deadline,
            )

    # ------------------------------------------------------------ bounded state

    def _horizon(self, part: _Partition) -> int | None:
        """Oldest event time a pending or future decision can still look at."""
        st = part.clock.stream_time()
        if st is None:
            return None
        if part.heap:
            st = min(st, part.heap[0][0])
        return st - self._max_settle

    def _prune(self, h: int | None, state: CustomerState) -> None:
        """Time-prune against the horizon; the size caps apply even before time is known."""
        lim = self.policy.state
        never = -(2**62)
        state.prune(
            never if h is None else h - lim.retention,
            never if h is None else h - self._send_window,
            never if h is None else h - self.policy.rules.duplicate_message.retention,
            lim.max_events,
            lim.max_sends,
            lim.max_message_ids,
        )

    def sweep(self, partition_of: Callable[[str], int]) -> int:
        """Prune every customer and forget the inactive ones; returns how many were dropped."""
        dropped = 0
        ttl = self.policy.state.inactive_ttl
        for cid in list(self.store.keys()):
            state = self.store.get(cid)
            if state is None:
                continue
            part = self.part(partition_of(cid))
            h = self._horizon(part)
            if h is None:
                continue
            before = state.size()
            self._prune(h, state)
            if not state.held and state.last_event < h - ttl:
                latest = {c.channel: c for c in state.consents}
                withdrawn = sorted((c for c in latest.values() if c.withdrawn), key=lambda c: c.t)
                if withdrawn:
                    self.store.put(
                        cid,
                        CustomerState(
                            consents=withdrawn, last_event=state.last_event, applied=state.applied
                        ),
                    )
                else:
                    self.store.delete(cid)
                dropped += 1
            elif state.size() != before:
                self.store.put(cid, state)
        self.counts["expired"] += dropped
        return dropped
