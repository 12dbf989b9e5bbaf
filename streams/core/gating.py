"""Campaign gating, the engine's whole-audience half (a mixin: ``Engine`` sets these
attributes): candidates enter the gate with their fingerprint and entry time, and the
gate lets them out in one order over all partitions (``streams.core.gate``). Offline
one gate serves every partition; live each partition has a replica, fed by
``outgoing`` / ``incoming`` through the worker's re-route topic.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from streams.core import rules
from streams.core.campaigns import Order, Trip, alert_of, fingerprint
from streams.core.candidate import Candidate
from streams.core.clock import NEVER
from streams.core.gate import COUNT, DECIDE, FOREVER, UNHEARD, CampaignGate, Count
from streams.core.outcomes import Output
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.pruning import Partition
from streams.core.state import NO_HORIZON, CustomerState, Horizons
from streams.core.store import StateStore, held_of

PROMISE_STEP = 1000
"""ms a promise must move before it is sent on its own (without entries)."""


class Gating:
    """The engine's campaign half."""

    policy: Policy
    store: StateStore
    history: PolicyHistory
    counts: Counter[str]
    partitions: int
    replicated: bool
    gate: CampaignGate | None
    orders: list[Order]
    _parts: dict[int, Partition]
    # inside a unit of work: what ``outgoing`` handed out, for ``rollback`` to take back
    _sent: list[tuple[Partition, list[Count], int]] | None

    def part(self, partition: int) -> Partition:
        raise NotImplementedError

    def view(self, cand: Candidate) -> rules.View:
        raise NotImplementedError

    def _content(
        self, state: CustomerState, cand: Candidate, policy: Policy, view: rules.View
    ) -> tuple[str, ...]:
        raise NotImplementedError

    def _decide(
        self,
        cid: str,
        seq: int,
        wall_ms: int,
        h: Horizons,
        what: int = 0,
        at: int = 0,
        gate: CampaignGate | None = None,
        entry_at: int = 0,
    ) -> Iterator[Output]:
        raise NotImplementedError

    def _enter_gate(self, part: Partition, entry: tuple[int, str, int, str]) -> None:
        """A candidate its partition would decide now goes to the campaign gate, with its
        fingerprint (taken now: it depends on the customer's facts alone) and its entry
        time: its deadline, unless its partition promised past that already (a trigger
        read late), so that every source's entries come in key order."""
        deadline, _mid, seq, cid = entry
        state, cand = held_of(self.store, cid, seq)
        if state is None or cand is None or cand.deadline != deadline:
            return
        at = max(deadline, cand.arr, part.promised + 1)
        count = self._count_of(state, cand, at)
        cand.gate_at = at
        self.store.put(cid, state)
        if part.gate is not None:
            # until its own replica has it back, nothing else keeps what it may see
            part.gate.keep(cid, seq, deadline)
        if self.replicated:
            part.outgoing.append(count)
        else:
            assert part.gate is not None
            part.gate.gate(count)
        self.counts["gated"] += 1

    def _send_again(self, part: Partition, cid: str, seq: int, mid: str, gate_at: int) -> None:
        """A gated candidate its own replica has not taken: its entry may still be on its
        way (a replica that has it drops the copy), or was never sent (at-least-once, a
        crash between the flush and the send). Sent again with the same entry time; one
        its replica is already past can only be gated anew."""
        gate = part.gate
        assert gate is not None
        state, cand = held_of(self.store, cid, seq)
        if state is None or cand is None:
            return
        if (gate_at, 1, mid, seq) <= gate.position:
            cand.gate_at = 0
            self.store.put(cid, state)
            heapq.heappush(part.heap, (cand.deadline, mid, seq, cid))
            self.counts["gated_again"] += 1
            return
        part.outgoing.append(self._count_of(state, cand, gate_at))
        self.counts["sent_again"] += 1

    def _count_of(self, state: CustomerState, cand: Candidate, at: int) -> Count:
        """A candidate's gate entry: campaign and content fingerprint (taken from the
        customer's facts alone, so the same whenever it is taken)."""
        fp = ""
        personalised = self.policy.blast.personalised
        if cand.trigger in personalised and cand.skus:
            policy = self.history.at(cand.created_at)
            content = self._content(state, cand, policy, self.view(cand))
            fp = fingerprint(cand.trigger, content, personalised)
        return (at, cand.message_id, cand.seq, cand.customer_id, cand.campaign,
                cand.created_at, fp)  # fmt: skip

    def _promise(self, part: Partition, wall_ms: int | None = None) -> int:
        """The partition has released every candidate due at or before this (and, with
        the entry times of ``_enter_gate``, will send no entry at or below it). A busy
        partition that read nothing yet promises nothing."""
        st, idle = part.clock.stream_time(), part.clock.all_idle
        if st is None and not idle:
            return NEVER
        if idle:
            # offline: it has nothing more; live: its next record comes from now on (and
            # what its customers' campaigns hold expires by the wall clock, as candidates
            # of a quiet partition are released by it)
            through = FOREVER if wall_ms is None else max(wall_ms - 1, st or NEVER)
            if wall_ms is None and st is not None:
                through = st
        else:
            assert st is not None
            through = st - 1
        if part.heap:
            through = min(through, part.heap[0][0] - 1)
        part.promised = max(part.promised, through)
        return part.promised

    def _through(self) -> int:
        """Every partition has released every candidate due at or before this."""
        low = FOREVER
        for p in range(self.partitions):
            part = self._parts.get(p)
            if part is None:
                return NEVER  # nothing read there yet: it may still hold anything
            low = min(low, self._promise(part))
        return low

    def _pass_gate(self, gate: CampaignGate, wall_ms: int, through: int) -> list[Output]:
        """Decide what the campaign gate lets out, in key order (see ``gate``)."""
        out: list[Output] = []
        while (entry := gate.next_due(through)) is not None:
            at, _rank, _mid, seq, cid, what, _o = entry
            if what == COUNT:
                gate.admit(entry)
            elif what == DECIDE:
                out.extend(self._decide(cid, seq, wall_ms, NO_HORIZON, DECIDE, 0, gate, at))
                if (cid, seq) in gate.info:
                    # not judged (gone, or its rules failed): counted all the same, as
                    # every other replica counts it
                    gate.admit(entry)
                    gate.done(cid, seq)
            elif _rank == 0:
                gate.apply(entry)
            else:
                out.extend(self._decide(cid, seq, wall_ms, NO_HORIZON, what, at, gate))
        return out

    # ------------------------------------------------------------ campaign replicas (worker)

    def outgoing(self, partition: int, wall_ms: int) -> tuple[list[Count], int] | None:
        """What the partition's replicas must hear of it: its entries since the last call
        and its promise; None when neither changed."""
        part = self.part(partition)
        promise = self._promise(part, wall_ms)
        wall_paced = part.clock.all_idle and wall_ms is not None and promise <= wall_ms
        if not part.outgoing and (
            promise == part.told
            or (wall_paced and part.told != UNHEARD and promise - part.told < PROMISE_STEP)
        ):
            return None  # an idle partition's promise follows the wall clock: not each ms
        counts, part.outgoing = part.outgoing, []
        if self._sent is not None:
            self._sent.append((part, counts, part.told))
        part.told = promise
        if part.gate is not None:
            part.gate.dirty = True  # its row keeps the promise told
        return counts, promise

    def incoming(
        self, partition: int, source: int, counts: list[Count], promise: int, wall_ms: int
    ) -> list[Output]:
        """A source's entries and promise reached ``partition``'s replica: decide what it
        lets out."""
        gate = self.part(partition).gate
        if gate is None:
            return []
        self.counts["counted"] += gate.take(source, source == partition, counts, promise)
        return self._pass_gate(gate, wall_ms, gate.through())

    def command(self, order: Order) -> int:
        """An ops command read live; gives how many gates took it (0: all were past its
        effective time, so it changes nothing)."""
        self.orders.append(order)
        gates = self._distinct_gates()
        key = (order.effective_ms, 0, "", order.seq)
        if any(g.position >= key for g in gates):
            # a replica is past it already: none of them applies it, or they would count
            # the campaign differently from then on (and none does after a restart)
            self.orders.remove(order)
            for g in gates:
                g.refuse(order.seq)
            return 0
        return sum(g.command(order) for g in gates)

    def load_replica(
        self,
        partition: int,
        row: list[Any] | None,
        campaigns: Iterable[tuple[str, list[Any]]],
    ) -> CampaignGate | None:
        """A recovery: the partition's replica as its changelog kept it (``row``: None, a
        new one), with the commands it has not applied yet."""
        part = self.part(partition)
        if not self.replicated:
            return part.gate
        gate = CampaignGate(self.policy.blast, (), sources=self.partitions)
        if row is not None:
            gate.load_row(row[:-1])
            told: int = row[-1]
            part.promised = max(part.promised, told)
            part.told = max(part.told, told)
        for campaign, crow in campaigns:
            gate.book.load(campaign, crow)
        for o in self.orders:
            if o.seq not in gate.refused:
                gate.command(o)
        part.gate = gate
        return gate

    def replica_rows(
        self, partition: int, everything: bool = False
    ) -> tuple[list[Any], list[tuple[str, list[Any] | None]]] | None:
        """What the partition's replica must keep durably: its own row and the rows of
        the campaigns changed since the last call (``everything``: all of them; None:
        a campaign the book forgot)."""
        part = self._parts.get(partition)
        if part is None or part.gate is None or not self.replicated:
            return None
        gate = part.gate
        book = gate.book
        if not (everything or gate.dirty or book.changed or book.dropped):
            return None
        gate.dirty = False
        names = list(book.campaigns) if everything else sorted(book.changed)
        book.changed.clear()
        gone, book.dropped = book.dropped, set()
        # its own promise as last sent: after a restart its entries stay above it
        rows: list[tuple[str, list[Any] | None]] = [(c, book.row(c)) for c in names]
        rows += [(c, None) for c in sorted(gone)]
        return [*gate.to_row(), part.told], rows

    def campaign_alerts(self) -> list[dict[str, Any]]:
        """Every tripped or killed campaign (each replica's book is the same; the lowest
        partition's is asked), with what this process holds of it."""
        gates = self.gates()
        if not gates:
            return []
        book = gates[min(gates)].book
        held: Counter[str] = Counter()
        for g in self._distinct_gates():
            for campaign, h in g.held.items():
                held[campaign] += len(h)
        out = []
        for campaign, st in sorted(book.campaigns.items()):
            if st.trip is not None or st.killed is not None:
                a = alert_of(campaign, st)
                a["held_here"] = held[campaign]
                out.append(a)
        return out

    def held_by_campaign(self, message_id: str) -> list[dict[str, Any]]:
        """Where a campaign holds ``message_id`` on these partitions: which trip, since
        when, and when the hold expires (what ``explain`` shows of a held message)."""
        out: list[dict[str, Any]] = []
        ttl = self.policy.blast.hold_ttl
        for p, g in sorted(self.gates().items()):
            for campaign, h in g.held.items():
                for (cid, _seq), (since, mid) in h.items():
                    if mid != message_id:
                        continue
                    st = g.book.campaigns.get(campaign)
                    a: dict[str, Any] = {"campaign": campaign}
                    if st is not None:
                        a = alert_of(campaign, st)
                    a.update(customer_id=cid, partition=p, held_since_ms=since,
                             expires_ms=since + ttl)  # fmt: skip
                    out.append(a)
            if self.gate is not None:
                break  # offline: one gate serves every partition
        return out

    def fresh_trips(self) -> list[Trip]:
        """Trips not alerted on yet, once each (every replica finds the same trip)."""
        seen: dict[tuple[str, int, str], Trip] = {}
        for g in self.gates().values():
            for t in g.book.fresh:
                seen.setdefault((t.campaign, t.at_ms, t.message_id), t)
            g.book.fresh.clear()
        return sorted(seen.values(), key=lambda t: (t.at_ms, t.campaign))

    def _distinct_gates(self) -> list[CampaignGate]:
        """Every gate once (offline one gate serves every partition)."""
        found = {id(p.gate): p.gate for p in self._parts.values() if p.gate is not None}
        if self.gate is not None:
            found[id(self.gate)] = self.gate
        return list(found.values())

    def gates(self) -> dict[int, CampaignGate]:
        """Each partition's campaign gate (the same one offline)."""
        return {p: part.gate for p, part in self._parts.items() if part.gate is not None}
