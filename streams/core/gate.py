"""The campaign gate: decisions in one global order, so campaign trips are deterministic.

Per-message rules are decided per partition, in deadline order, once that
partition's stream time passes a deadline. A campaign spans every partition,
so its counts must see candidates in one order that no lag or interleaving
can change: the key ``(deadline, message_id)`` over all partitions. With
``[blast]`` on, a candidate whose partition's stream time passed its deadline
is *gated*: it waits until every partition has released everything up to its
deadline (``through``), then it is decided, and counted in its campaign's
book, in key order. Nothing about a decision depends on when it is made
(``rules.View``), so waiting changes no per-message answer, only when it is
given.

A tripped campaign's candidates stay held (in their customer's state, as every
held candidate) until ops release or kill the campaign, or until ``hold_ttl``
after their deadline; they are then decided again, with every rule, as of that
time. Ops commands travel as entries of the same order, at their effective
time, before any candidate of that instant.

In the worker each partition keeps a *replica* of the gate (``sources``: the
partition count): a partition's candidates reach every replica, its own
included, as count entries with its fingerprint (``take``), and each source
promises that no later entry of its will sort at or below its promise. A
replica lets entries out up to the lowest promise of all sources, so every
replica feeds its book the same entries in the same order and trips at the
same candidate; it decides only its own partition's candidates and merely
counts the others'.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.core import rules
from streams.core.campaigns import Book, Order, Trip
from streams.core.candidate import Candidate
from streams.core.clock import human, human_span
from streams.core.policy import Blast

DECIDE, EXPIRE, REDECIDE, COUNT = 1, 2, 3, 4  # what a candidate entry asks for
COMMAND = 0  # sorts before the candidates of the same instant

# (time, rank, message_id, seq, customer, what, order index)
Entry = tuple[int, int, str, int, str, int, int]
# what a source sends of one candidate: (gate time, message id, seq, customer,
# campaign, created_at, fingerprint)
Count = tuple[int, str, int, str, str, int, str]

FOREVER = 2**62
UNHEARD = -(2**62)  # a source's promise before it made one


@dataclass(slots=True)
class Judged:
    """What the gate makes of a decision: the decision to give (None: still held)."""

    decision: rules.Decision | None
    trip: Trip | None = None  # the campaign's trip that holds it, when held


class CampaignGate:
    def __init__(self, blast: Blast, orders: Iterable[Order] = (), sources: int = 0) -> None:
        """``sources``: a replica's partition count (0: the one gate of every partition)."""
        self.blast = blast
        self.book = Book(blast)
        self._heap: list[Entry] = []
        self._orders: list[Order] = []
        # (customer, seq) -> (campaign, created_at, fingerprint) of a gated or counted entry
        self.info: dict[tuple[str, int], tuple[str, int, str]] = {}
        # replica: each source's promise; the key of the last entry let out
        self.sources = sources
        self.promised: dict[int, int] = {}
        self.position: tuple[int, int, str, int] = (UNHEARD, 0, "", 0)
        self.dirty = False  # changed since the worker last saved it
        self._expire_at = UNHEARD  # when the book next forgets quiet campaigns
        self.refused: set[int] = set()  # commands read after a replica had passed them
        # campaign -> {(customer, seq): (original deadline, message id)} of what it holds
        self.held: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
        # lowest original deadline of a gated or held candidate (lazy deletions)
        self._floor: list[tuple[int, str, int]] = []
        self._live: dict[tuple[str, int], int] = {}
        for o in orders:
            self.command(o)

    # ------------------------------------------------------------ entries

    def command(self, order: Order) -> bool:
        """Queue an ops command; False when this gate is past its effective time already
        (a replica restored after applying it, or a command given too late)."""
        if (order.effective_ms, COMMAND, "", order.seq) <= self.position:
            return False
        self._orders.append(order)
        self.dirty = True
        heapq.heappush(
            self._heap,
            (order.effective_ms, COMMAND, "", order.seq, order.campaign, COMMAND,
             len(self._orders) - 1),
        )  # fmt: skip
        return True

    def gate(self, c: Count, what: int = DECIDE) -> None:
        """A candidate its partition would decide now: decided (``COUNT``: counted only,
        another partition's) once ``through`` allows."""
        at, message_id, seq, customer, campaign, created, fp = c
        heapq.heappush(self._heap, (at, 1, message_id, seq, customer, what, -1))
        self.info[(customer, seq)] = (campaign, created, fp)
        self.dirty = True
        if what == DECIDE:
            self.keep(customer, seq, at)

    # ------------------------------------------------------------ replica

    def take(self, source: int, own: bool, counts: Iterable[Count], promise: int) -> int:
        """A source's entries and promise, as it sent them; gives how many were new. An
        entry at or below what was let out already, or still waiting here, was sent
        again (its source restarted without having recorded sending it): dropped."""
        n = 0
        info, position = self.info, self.position
        for c in counts:
            if (c[0], 1, c[1], c[2]) <= position or (c[3], c[2]) in info:
                continue
            self.gate(c, DECIDE if own else COUNT)
            n += 1
        before = self.promised.get(source, UNHEARD)
        if promise > before:
            self.promised[source] = promise
            self.dirty = True
        return n

    def knows(self, customer: str, seq: int) -> bool:
        """Has this replica taken the entry of its own candidate (waiting or holding it)?"""
        return (customer, seq) in self.info or any((customer, seq) in h for h in self.held.values())

    def refuse(self, seq: int) -> None:
        self.refused.add(seq)
        self.dirty = True

    def through(self) -> int:
        """A replica's lowest promise over all sources (None heard from one: nothing)."""
        if len(self.promised) < self.sources:
            return UNHEARD
        return min(self.promised.values())

    def counted(self, entry: Entry) -> tuple[str, int, str]:
        """An entry's (campaign, created_at, fingerprint), forgotten: it is let out."""
        return self.info.pop((entry[4], entry[3]))

    def admit(self, entry: Entry) -> None:
        """Another partition's candidate, counted in its campaign's book."""
        campaign, created, fp = self.counted(entry)
        self.book.admit(campaign, entry[0], entry[2], created, fp)

    def keep(self, customer: str, seq: int, deadline: int) -> None:
        """Pruning may not pass ``deadline`` until this candidate is decided (a lower
        bound taken earlier stays: its partition keeps it from when it sends it)."""
        found = self._live.get((customer, seq))
        if found is not None and found <= deadline:
            return
        self._live[(customer, seq)] = deadline
        heapq.heappush(self._floor, (deadline, customer, seq))

    def _done(self, customer: str, seq: int) -> None:
        self._live.pop((customer, seq), None)

    @property
    def floor(self) -> int:
        """No decision still to come looks below this deadline (pruning's bound)."""
        f = self._floor
        while f and self._live.get((f[0][1], f[0][2])) != f[0][0]:
            heapq.heappop(f)
        return f[0][0] if f else FOREVER

    def pending(self) -> int:
        return len(self._live)

    def next_due(self, through: int) -> Entry | None:
        """The next entry ``through`` lets out, popped; None when there is none."""
        if self._heap and self._heap[0][0] <= through:
            e = heapq.heappop(self._heap)
            self.position = (e[0], e[1], e[2], e[3])
            self.dirty = True
            if e[0] >= self._expire_at:
                # once a window, in the gate's order: every replica forgets alike
                self.book.expire(e[0])
                self._expire_at = e[0] + self.blast.window
            return e
        return None

    # ------------------------------------------------------------ commands

    def apply(self, entry: Entry) -> Order:
        """An ops command at its effective time: a release or a kill has what the campaign
        holds decided again as of then (queued in key order)."""
        order = self._orders[entry[6]]
        self.book.apply(order)
        if order.command != "resume":
            for (cid, seq), (_d, mid) in self.held.get(order.campaign, {}).items():
                heapq.heappush(self._heap, (order.effective_ms, 1, mid, seq, cid, REDECIDE, -1))
        return order

    # ------------------------------------------------------------ decisions

    def judge(
        self,
        cand: Candidate,
        decision: rules.Decision,
        what: int,
        original: int,
        at: int = 0,
    ) -> Judged:
        """The campaign's word on a decision the rules made; ``original``: the deadline
        the candidate was first due at (what its hold's expiry counts from); ``at``: its
        entry's time (a first decision counts it in the book there)."""
        if what == DECIDE:
            return self._first(cand, decision, at)
        campaign = self.book.campaigns.get(cand.campaign)
        killed = campaign is not None and campaign.killed is not None
        if decision.action == "suppress":
            return Judged(decision)
        if killed:
            assert campaign is not None and campaign.killed is not None
            k = campaign.killed
            return Judged(_campaign_decision(
                decision, "campaign_killed",
                f"campaign {cand.campaign} was killed by {k.by}: {k.reason}",
            ))  # fmt: skip
        if what == EXPIRE:
            trip = campaign.trip if campaign is not None else None
            why = trip.summary() if trip is not None else "the campaign tripped"
            return Judged(_campaign_decision(
                decision, "campaign_held_expired",
                f"campaign {cand.campaign} was held since {human(original)} and nobody "
                f"released it within {human_span(self.blast.hold_ttl)} ({why})",
            ))  # fmt: skip
        return Judged(decision)  # released

    def _first(self, cand: Candidate, decision: rules.Decision, at: int) -> Judged:
        campaign, created, fp = self.info.pop((cand.customer_id, cand.seq))
        verdict = self.book.admit(campaign, at, cand.message_id, created, fp)
        if decision.action == "suppress" or verdict == "pass":
            return Judged(decision)
        if verdict == "kill":
            k = self.book.campaigns[cand.campaign].killed
            assert k is not None
            return Judged(_campaign_decision(
                decision, "campaign_killed",
                f"campaign {cand.campaign} was killed by {k.by}: {k.reason}",
            ))  # fmt: skip
        trip = self.book.tripped(cand.campaign)
        return Judged(None, trip)

    def hold(self, cand: Candidate, original: int) -> None:
        """Keep a tripped campaign's candidate until ops act or its hold expires."""
        key = (cand.customer_id, cand.seq)
        self.held.setdefault(cand.campaign, {})[key] = (original, cand.message_id)
        heapq.heappush(
            self._heap,
            (original + self.blast.hold_ttl, 1, cand.message_id, cand.seq, cand.customer_id,
             EXPIRE, -1),
        )  # fmt: skip
        self.keep(cand.customer_id, cand.seq, original)

    def still_held(self, campaign: str, customer: str, seq: int) -> int | None:
        """The original deadline of a candidate the campaign still holds, else None."""
        found = self.held.get(campaign, {}).get((customer, seq))
        return None if found is None else found[0]

    def release_one(self, campaign: str, customer: str, seq: int) -> None:
        held = self.held.get(campaign)
        if held is not None:
            held.pop((customer, seq), None)
            if not held:
                del self.held[campaign]
        self._done(customer, seq)

    def done(self, customer: str, seq: int) -> None:
        self._done(customer, seq)

    def held_count(self) -> int:
        return sum(len(h) for h in self.held.values())

    # ------------------------------------------------------------ a replica's durable form

    def to_row(self) -> list[Any]:
        """Everything but the book's campaigns (kept one per key, see ``Book.row``) and
        the commands (read again from the campaigns topic; ``done`` says which are
        applied)."""
        info = self.info
        return [
            [list(e[:6]) + list(info.get((e[4], e[3]), ("", 0, ""))) for e in self._heap
             if e[5] != COMMAND],
            [[c, [[cid, seq, d, mid] for (cid, seq), (d, mid) in h.items()]]
             for c, h in self.held.items()],
            [[s, t] for s, t in self.promised.items()],
            list(self.position),
            self._expire_at,
            sorted(self.refused),
        ]  # fmt: skip

    def load_row(self, row: list[Any]) -> None:
        heap, held, promised, position = row[:4]
        if len(row) > 4:  # rows of the first version had neither
            self._expire_at = row[4]
            self.refused = set(row[5])
        for at, rank, mid, seq, cid, what, campaign, created, fp in heap:
            if what in (DECIDE, COUNT):
                self.info[(cid, seq)] = (campaign, created, fp)
            self._heap.append((at, rank, mid, seq, cid, what, -1))
            if what == DECIDE:
                self.keep(cid, seq, at)
        heapq.heapify(self._heap)
        for campaign, entries in held:
            h = self.held.setdefault(campaign, {})
            for cid, seq, d, mid in entries:
                h[(cid, seq)] = (d, mid)
                self.keep(cid, seq, d)
        self.promised = dict(promised)
        self.position = (position[0], position[1], position[2], position[3])


def _campaign_decision(decision: rules.Decision, rule: str, reason: str) -> rules.Decision:
    return rules.Decision("suppress", rule, reason, (), (), decision.skus, decision.monitored)
