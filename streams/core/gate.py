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
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from streams.core import rules
from streams.core.campaigns import Book, Order, Trip, fingerprint
from streams.core.candidate import Candidate
from streams.core.clock import human, human_span
from streams.core.policy import Blast

DECIDE, EXPIRE, REDECIDE = 1, 2, 3  # what a candidate entry asks for
COMMAND = 0  # sorts before the candidates of the same instant

# (time, rank, message_id, seq, customer, what, order index)
Entry = tuple[int, int, str, int, str, int, int]

FOREVER = 2**62


@dataclass(slots=True)
class Judged:
    """What the gate makes of a decision: the decision to give (None: still held)."""

    decision: rules.Decision | None
    trip: Trip | None = None  # the campaign's trip that holds it, when held


class CampaignGate:
    def __init__(self, blast: Blast, orders: Iterable[Order] = ()) -> None:
        self.blast = blast
        self.book = Book(blast)
        self._heap: list[Entry] = []
        self._orders: list[Order] = []
        # campaign -> {(customer, seq): (original deadline, message id)} of what it holds
        self.held: dict[str, dict[tuple[str, int], tuple[int, str]]] = {}
        # lowest original deadline of a gated or held candidate (lazy deletions)
        self._floor: list[tuple[int, str, int]] = []
        self._live: dict[tuple[str, int], int] = {}
        for o in orders:
            self.command(o)

    # ------------------------------------------------------------ entries

    def command(self, order: Order) -> None:
        self._orders.append(order)
        heapq.heappush(
            self._heap,
            (order.effective_ms, COMMAND, "", order.seq, order.campaign, COMMAND,
             len(self._orders) - 1),
        )  # fmt: skip

    def gate(self, deadline: int, message_id: str, seq: int, customer: str) -> None:
        """A candidate its partition would decide now: decided once ``through`` allows."""
        heapq.heappush(self._heap, (deadline, 1, message_id, seq, customer, DECIDE, -1))
        self._keep(customer, seq, deadline)

    def _keep(self, customer: str, seq: int, deadline: int) -> None:
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
            return heapq.heappop(self._heap)
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
        content: tuple[str, ...] = (),
    ) -> Judged:
        """The campaign's word on a decision the rules made; ``original``: the deadline
        the candidate was first due at (what its hold's expiry counts from); ``content``:
        the SKUs it would send after rewrites, whatever else the rules said (so that its
        fingerprint depends on the customer's facts alone, not on other messages)."""
        if what == DECIDE:
            return self._first(cand, decision, content)
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

    def _first(self, cand: Candidate, decision: rules.Decision, content: tuple[str, ...]) -> Judged:
        fp = fingerprint(cand.trigger, content, self.book.personalised)
        verdict = self.book.admit(cand.campaign, cand.deadline, cand.message_id,
                                  cand.created_at, fp)  # fmt: skip
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
        self._keep(cand.customer_id, cand.seq, original)

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


def _campaign_decision(decision: rules.Decision, rule: str, reason: str) -> rules.Decision:
    return rules.Decision("suppress", rule, reason, (), (), decision.skus, decision.monitored)
