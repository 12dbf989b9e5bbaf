"""Bounded state: what each customer keeps, and when facts may go.

A fact can be pruned once no pending or future decision can look at it: the
horizons follow the partition's stream time, held back by its earliest held
candidate (and, with campaigns on, by the gate's). Sweeps prune every customer
and forget the inactive ones; since they only remove what no decision may see
(``Engine.view``), they never change a decision, offline or live. The engine
inherits this half; it is kept apart so each file reads as one concept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from streams.core.clock import NEVER, StreamClock
from streams.core.gate import UNHEARD, CampaignGate, Count
from streams.core.outbox import Outbox
from streams.core.state import NO_HORIZON, Caps, CustomerState, Horizons
from streams.core.store import StateStore


class Partition:
    """One partition's stream clock and the heap of its held candidates by deadline."""

    __slots__ = (
        "acks", "applied", "clock", "done", "echo", "gate", "heap", "heard_at", "horizons",
        "judging", "link_rows", "link_seq", "outgoing", "own", "promised", "sent_to", "told",
        "waiting",
        "waiting_ids",
    )  # fmt: skip

    def __init__(self, clock: StreamClock, gate: CampaignGate | None = None) -> None:
        self.clock = clock
        self.heap: list[tuple[int, str, int, str]] = []  # (deadline, message_id, seq, customer)
        # campaigns: the gate deciding its candidates (shared offline, a replica live),
        # the entries not yet sent to the replicas, and its last promise (see ``gate``)
        self.gate = gate
        self.outgoing: list[Count] = []
        self.promised = UNHEARD
        self.told = UNHEARD  # the promise the replicas last heard
        self.horizons = NO_HORIZON  # the last computed, reused while its base stands
        # identity links (``linking``): own links to judge (seen from, event id, number),
        # links read here, links heard per source partition, the other partitions' marker
        # acknowledgements of them, links not yet acknowledged by every partition (seen
        # from, source, number, event id), and link rows changed since they were last saved
        self.judging: list[tuple[int, str, int]] = []
        self.link_seq = 0
        self.own: set[str] = set()  # event ids of the links read here
        # linked customers of this partition -> the partitions their facts were copied to
        # (a restart forgets it: their facts are copied again, taken once)
        self.sent_to: dict[str, set[int]] = {}
        self.done: dict[int, int] = {}
        self.acks: dict[int, dict[int, int]] = {}
        self.waiting: list[tuple[int, int, int, str]] = []
        # the same links by each id they join, id -> {(source, number): seen from}: what
        # a linked customer's candidate waits for, found without walking every link
        self.waiting_ids: dict[str, dict[tuple[int, int], int]] = {}
        self.link_rows: dict[str, list[Any]] = {}
        # markers (live): per source, those this partition applied (its own: sent), as
        # (stamp, lowest busy frontier, all idle); the newest applied per source; and per
        # other partition, the newest of each source it says it applied (``_caught_up``)
        self.heard_at: dict[int, list[tuple[int, int, bool]]] = {}
        self.applied: dict[int, int] = {}
        self.echo: dict[int, dict[int, int]] = {}


class Pruning:
    """The engine's bounded-state half (a mixin: ``Engine`` sets these attributes)."""

    store: StateStore
    outbox: Outbox | None
    counts: Counter[str]
    _keep: Horizons
    _max_settle: int
    _longest_hold: int
    _caps: Caps

    def part(self, partition: int) -> Partition:
        raise NotImplementedError

    def _horizons(self, part: Partition) -> Horizons:
        """Oldest event time a pending or future decision can still look at, per kind."""
        st = part.clock.stream_time()
        if st is None:
            return NO_HORIZON
        if part.heap:
            st = min(st, part.heap[0][0])
        if part.gate is not None:
            st = min(st, part.gate.floor)
        h = st - self._max_settle - self._longest_hold
        if part.horizons.at == h:
            return part.horizons  # stream time did not move: most records of a backlog
        k = self._keep
        part.horizons = Horizons(
            h - k.events, h - k.sends, h - k.ids, h - k.orders, h - k.epochs, at=h
        )
        return part.horizons

    def _kept(self, state: CustomerState, t: int, order: bool) -> None:
        """A fact at ``t`` (NEVER: none) was added, and epochs may have been merged or
        started: lower the state's ``due`` so the next prune looks at them."""
        k = self._keep
        due = state.due
        if t != NEVER:
            due = min(due, t + k.events)
            if order:
                due = min(due, t + k.orders)
        if len(state.epochs) > 1:
            due = min(due, state.epochs[0].end + k.epochs)
        state.due = due

    def _prune(self, h: Horizons, state: CustomerState) -> None:
        """Time-prune against the horizons; the size caps apply even before time is known."""
        state.prune(h, self._caps)

    def sweep(self, partition_of: Callable[[str], int]) -> int:
        """Prune every customer and forget the inactive ones; returns how many were dropped.

        Safe at any time: it removes only what no decision may see any more (see
        ``view``), so a sweep never changes a decision, offline or live, nor does
        sweeping one customer now and the next one later."""
        dropped = 0
        for gone in self.sweeping(self.store.keys(), partition_of):
            dropped += gone
        return dropped

    def sweeping(self, keys: Iterable[str], partition_of: Callable[[str], int]) -> Iterator[int]:
        """The sweep one customer at a time (yields 1 per customer dropped, else 0), for a
        caller that must give the event loop back every few milliseconds."""
        for cid in keys:
            yield self._sweep_one(cid, partition_of)
        self.counts["sweeps"] += 1

    def _sweep_one(self, cid: str, partition_of: Callable[[str], int]) -> int:
        state = self.store.get(cid)
        if state is None:
            return 0
        h = self._horizons(self.part(partition_of(cid)))
        if h is NO_HORIZON:
            return 0
        before = state.size()
        self._prune(h, state)
        if self.outbox is not None:
            self.outbox.drop_delivered(state)
        if not state.held and state.last_activity < h.epochs:
            kept = state.forget()
            if kept is None:
                self.store.delete(cid)
            else:
                self.store.put(cid, kept)
            self.counts["expired"] += 1
            return 1
        if state.size() != before:
            self.store.put(cid, state)
        return 0
