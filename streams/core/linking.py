"""Identity links in the engine: the book, facts travelling to a group, decisions against it.

How a group's facts meet (see ``identity`` for what a group is at a deadline):

- every partition keeps the whole ``LinkBook``: a link read by the alias's partition
  is *broadcast* to every other partition (the worker's re-route topic; offline, at
  once), numbered per partition that read it;
- the facts of a customer stay with the customer's own state and are *copied* to the
  partitions of every id it has ever been linked with (``reach``), into a *shadow*
  state of that id kept there (a key of its own that lands in that partition). Copies
  go out when the fact is read if a link is known by then, and again for all its
  facts when a partition hears a link that reaches its customers. Copies keep their
  event time and arrival frontier, so what a decision sees of them is exactly what it
  would see of the id's own state;
- a decision of a customer with linked ids reads its own state plus, for every id of
  its group at the deadline, that id's state (same partition) or shadow (another),
  merged (``grouped``). Consent is never widened: a withdrawal in force for any id of
  the group is the group's, whatever the others granted later.

Live, a partition must not decide a deadline before every partition has heard every
link that deadline sees and sent its copies: each partition's progress markers carry
how many links of each source it has heard (``acked``), and a deadline waits until
all of them acknowledge every link it sees (``links_ok``). The copies a partition
sends are on the re-route topic before that marker, so they are read first. A fact
read after its link is covered by the ordinary markers of its own stream.

The partition that read a link judges it once every link its event time sees is in
(its stream time passed it): a refused link (cycle, over ``max_group``, an unlink of
a pair not linked) is dead-lettered with the reason, exactly once.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from typing import Any

from streams.core.clock import human, iso
from streams.core.identity import (
    FACT_TOPIC,
    Group,
    Link,
    LinkBook,
    StateFact,
    fact_of,
    fact_row,
)
from streams.core.late import LateChecks
from streams.core.outcomes import Output, Refused
from streams.core.pruning import Partition, Pruning
from streams.core.state import ALWAYS, NEVER, ConsentFact, CustomerState, Epoch, OrderFact

LINKED = ", linked to "
"""What a reason says of evidence from a linked id ("purchase p-1 by g-77, linked to c-42
at ..."): the offline report finds the decisions only a link made possible by it."""
SUMMARY = "E"  # a copy of what pruning left of a customer's older activity
HEARD_KEPT = 64  # markers remembered per source (``note_marker``)
SHADOW = "\x01"  # shadow keys: never a customer id (ids hold no control character)

Forward = tuple[str, int, Any]
"""What the engine asks its driver to send to another partition: ``("copy", target,
(origin id, fact row))`` or ``("link", target, (link, source partition, number))``."""


def is_shadow(key: str) -> bool:
    return key.startswith(SHADOW)


def shadow_owner(key: str) -> str:
    """The id whose facts a shadow key holds."""
    return key[1:].split("\x00", 1)[0]


class Linking(Pruning):
    """The engine's identity half (a mixin: ``Engine`` sets these attributes)."""

    partitions: int
    _ttl: int
    _late: LateChecks
    book: LinkBook
    partition_of: Callable[[str], int]
    forwards: list[Forward]
    acked_links: bool
    _shadow_keys: dict[tuple[str, int], str]
    # links judged since begin(): judged again after a rollback (their refusal unwritten)
    _judged: list[tuple[Partition, tuple[int, str, int]]] | None

    def _outbox(self, state: CustomerState, outputs: list[Output]) -> None:
        raise NotImplementedError  # the engine's

    # ------------------------------------------------------------ where things are

    def shadow_key(self, cid: str, partition: int) -> str:
        """The key of ``cid``'s copied facts in ``partition``: lands there by the same hash
        as every customer, so the changelog keeps it with that partition."""
        key = self._shadow_keys.get((cid, partition))
        if key is None:
            i = 0
            while self.partition_of(f"{SHADOW}{cid}\x00{i}") != partition:
                i += 1
            key = self._shadow_keys[(cid, partition)] = f"{SHADOW}{cid}\x00{i}"
        return key

    def _facts_of(self, cid: str, partition: int) -> CustomerState | None:
        """What ``partition`` knows of ``cid``'s facts: its state there, or its shadow."""
        if self.partition_of(cid) == partition:
            return self.store.get(cid)
        return self.store.get(self.shadow_key(cid, partition))

    def _destinations(self, cid: str, here: int) -> list[int]:
        reach = self.book.reach(cid)
        return sorted({self.partition_of(m) for m in reach} - {here})

    # ------------------------------------------------------------ links in

    def _link_read(self, part: Partition, partition: int, link: Link, arr: int,
                   source: tuple[str, int] | None) -> list[Output]:  # fmt: skip
        """A link read by the alias's own partition (directly, or re-routed to it)."""
        link.arr = arr
        if link.event_id in part.own:
            # read here already (a crash or a rebalance read it again); one heard from
            # another partition is still read here as this partition's own
            self.counts["redelivered"] += 1
            return []
        part.own.add(link.event_id)
        if source is not None:
            link.origin = _origin(source)
        if not self.book.add(link):
            link = self.book.links[link.event_id]  # heard from elsewhere: the same link
            link.origin = link.origin or (None if source is None else _origin(source))
        self.counts["unlinks" if link.unlink else "links"] += 1
        part.link_seq += 1
        n = part.link_seq
        part.done[partition] = n
        heapq.heappush(part.judging, (link.seen_from, link.event_id, n))
        part.link_rows[link.event_id] = [*link.row(), 1, 0, partition, n]  # own, not judged
        for q in range(self.partitions):
            if q != partition:
                self.forwards.append(("link", q, (link, partition, n)))
        self._after_link(part, partition, link, partition, n)
        return []

    def relay_link(self, partition: int, link: Link, arr: int) -> None:
        """A link read on a wrong partition (a producer without murmur2): it goes on to its
        alias's partition by re-route, which judges it; this partition also broadcasts it
        at once, numbered as its own, so every partition hears it within one hop, before
        this partition's markers pass it (the alias's partition would be a second)."""
        part = self.part(partition)
        link.arr = arr
        self.book.add(link)
        part.link_seq += 1
        n = part.link_seq
        part.done[partition] = n
        part.link_rows.setdefault(link.event_id, [*link.row(), 0, 0, partition, n])
        for q in range(self.partitions):
            if q != partition:
                self.forwards.append(("link", q, (link, partition, n)))
        self._after_link(part, partition, link, partition, n)

    def hear_link(self, partition: int, link: Link, source: int, n: int) -> None:
        """A link another partition read, broadcast to this one."""
        part = self.part(partition)
        self.book.add(link)
        part.link_rows.setdefault(link.event_id, [*link.row(), 0, 0, source, n])
        if n > part.done.get(source, 0):
            part.done[source] = n
        self._after_link(part, partition, link, source, n)

    def _after_link(self, part: Partition, partition: int, link: Link, source: int,
                    n: int) -> None:  # fmt: skip
        """Copy this partition's customers' facts to the partitions the link newly
        reaches (those that had them get new facts as they are read: ``_fan_out``)."""
        if self.acked_links:
            self._wait_for(part, link, source, n)
        reach = self.book.reach(link.alias)
        parts = {self.partition_of(m) for m in reach} - {partition}
        for cid in sorted(reach):
            if self.partition_of(cid) != partition:
                continue
            had = part.sent_to.setdefault(cid, set())
            new = parts - had
            had |= new
            state = self.store.get(cid)
            if state is None or not new:
                continue
            summary = _summary_row(state)
            for q in sorted(new):
                # what pruning left of older activity (first purchase, orders) goes too
                self.forwards.append(("copy", q, (cid, summary)))
                for fact in _facts(state):
                    self.forwards.append(("copy", q, (cid, fact_row(fact))))
                    self.counts["link_copies"] += 1

    def _fan_out(self, partition: int, cid: str, fact: StateFact) -> None:
        """A fact of a linked customer was read: a copy for every partition it may count in."""
        for q in self._destinations(cid, partition):
            self.forwards.append(("copy", q, (cid, fact_row(fact))))
            self.counts["link_copies"] += 1

    def take_copy(self, partition: int, origin: str, row: list[Any]) -> list[Output]:
        """A copy of another partition's customer's fact, or of what pruning left of its
        older activity (``_summary_row``): into its shadow here. Gives the late evidence
        it is for this partition's customers in a group with ``origin``."""
        key = self.shadow_key(origin, partition)
        state = self.store.get(key) or CustomerState()
        if row[0] == SUMMARY:
            for start, end, fp in row[1]:
                first = None if fp is None else (str(fp[0]), int(fp[1]), int(fp[2]))
                state.absorb(Epoch(int(start), int(end), first), self._ttl)
            for oid, p, items, returns in row[2]:
                state.absorb_order(OrderFact(
                    str(oid), None if p is None else (str(p[0]), int(p[1]), int(p[2])),
                    tuple((str(s), int(q)) for s, q in items),
                    [(str(e), int(t), int(a), tuple((str(s), int(q)) for s, q in its))
                     for e, t, a, its in returns],
                ))  # fmt: skip
            self._kept(state, NEVER, False)
            self.store.put(key, state)
            return []
        fact = fact_of(row)
        if not state.add(fact, self._ttl):
            return []  # had it (sent again when another link reached it)
        self._kept(state, fact.t, False)
        self.store.put(key, state)
        return self.late_in_group(partition, origin, fact)

    def _linked_fact(
        self, state: CustomerState, cid: str, kind: str, fact: StateFact, partition: int
    ) -> list[Output]:
        """A linked customer's new fact: copies for its group's partitions, late evidence
        for its own decisions and for its group's on this partition."""
        self._fan_out(partition, cid, fact)
        self.store.put(cid, state)  # what the group's checks read of it
        return self.late_in_group(partition, cid, fact, own=True)

    def late_in_group(
        self, partition: int, origin: str, fact: StateFact, own: bool = False
    ) -> list[Output]:
        """``origin``'s fact was just taken in on ``partition``: would it have changed a
        decision already made for one of this partition's customers in a group with
        ``origin`` at that decision's deadline (``own``: ``origin`` too, whose decisions
        were made against its group)? Those are late evidence, as a customer's own fact
        is."""
        out: list[Output] = []
        kind = FACT_TOPIC[type(fact)]
        for m in sorted(self.book.reach(origin) - ({origin} if not own else set())):
            if self.partition_of(m) != partition:
                continue
            state = self.store.get(m)
            if state is None or not (state.sent or state.suppressed):
                continue
            found = []
            for msg in (*state.sent, *state.suppressed):
                if msg.deadline < fact.t:
                    continue
                if m != origin and origin not in self.book.group(m, msg.deadline).members:
                    continue
                seen, _ = self.grouped(state, m, msg.deadline, ALWAYS)
                why = "" if m == origin else f" ({_noun(kind)} {fact.event_id} by {origin})"
                late = self._late.finding(seen, m, msg, fact, kind, why)
                if late is not None:
                    found.append(late)
            if found:
                self.counts["late_evidence"] += len(found)
                self._outbox(state, list(found))
                self.store.put(m, state)
                out.extend(found)
        return out

    # ------------------------------------------------------------ acknowledgements (live)

    def link_done(self, partition: int) -> dict[int, int]:
        """How many links of each source partition this one has heard (for its markers)."""
        return dict(self.part(partition).done)

    def hear_acks(self, partition: int, source: int, done: dict[int, int]) -> None:
        """``source``'s marker says which links it has heard (and copied for)."""
        part = self.part(partition)
        acks = part.acks.setdefault(source, {})
        for s, n in done.items():
            if n > acks.get(s, 0):
                acks[s] = n
        waiting = part.waiting
        while waiting and self._acked(part, partition, waiting[0][1], waiting[0][2]):
            _seen_from, s, n, eid = heapq.heappop(waiting)
            link = self.book.links.get(eid)
            if link is not None:
                for i in (link.alias, link.target):
                    pending = part.waiting_ids.get(i)
                    if pending is not None:
                        pending.pop((s, n), None)
                        if not pending:
                            del part.waiting_ids[i]

    def _wait_for(self, part: Partition, link: Link, source: int, n: int) -> None:
        """A link every other partition must acknowledge before the candidates it may
        reach are decided. Indexed by the ids of the link the book keeps under its event
        id (the first one: what ``hear_acks`` prunes by), at the earliest ``seen_from``
        heard under that number (a link heard again, or a number a restarted
        at-least-once sender gave another link, must not make a deadline wait less)."""
        seen_from = link.seen_from
        heapq.heappush(part.waiting, (seen_from, source, n, link.event_id))
        known = self.book.links.get(link.event_id, link)
        for i in (known.alias, known.target):
            pending = part.waiting_ids.setdefault(i, {})
            if pending.get((source, n), seen_from) >= seen_from:
                pending[(source, n)] = seen_from

    def _acked(self, part: Partition, partition: int, source: int, n: int) -> bool:
        acks = part.acks
        for p in range(self.partitions):
            if p != partition and acks.get(p, {}).get(source, 0) < n:
                return False
        return True

    # ------------------------------------------------------------ caught up (live)

    def note_marker(
        self, partition: int, source: int, stamp: int, local: dict[str, tuple[int | None, bool]]
    ) -> None:
        """``partition`` applied (or, ``source == partition``, sent) a progress marker of
        ``source`` taken at ``stamp``: what it says, kept for ``_caught_up``."""
        part = self.part(partition)
        busy = [f for f, idle in local.values() if not idle]
        low = None if any(f is None for f in busy) else min(busy, default=ALWAYS)  # type: ignore[type-var]
        seen = part.heard_at.setdefault(source, [])
        entry = (stamp, NEVER if low is None else low, not busy)
        if seen and seen[-1][1:] == entry[1:] and seen[-1][0] <= stamp:
            return self._applied(part, partition, source, stamp)  # nothing new said
        bisect.insort(seen, entry)  # in stamp order (markers by Kafka arrive late)
        if len(seen) > HEARD_KEPT:
            del seen[: len(seen) - HEARD_KEPT]  # a later stamp is needed then: safe
        self._applied(part, partition, source, stamp)

    @staticmethod
    def _applied(part: Partition, partition: int, source: int, stamp: int) -> None:
        if source != partition and stamp > part.applied.get(source, -1):
            part.applied[source] = stamp

    def marker_echo(self, partition: int) -> dict[int, int]:
        """The newest marker of each other partition this one has applied (for its markers)."""
        return dict(self.part(partition).applied)

    def hear_echo(self, partition: int, source: int, echo: dict[int, int]) -> None:
        mine = self.part(partition).echo.setdefault(source, {})
        for s, stamp in echo.items():
            if stamp > mine.get(s, -1):
                mine[s] = stamp

    def _caught_up(self, part: Partition, partition: int, deadline: int, reach: set[str]) -> bool:
        """Has every partition owning an id of ``reach`` read everything any partition
        forwarded to it in time for ``deadline``? A fact put on a wrong partition reaches
        its customer's partition by re-route and is copied on from there: two hops, which
        no single marker covers. It has, once it has applied the marker of each source that
        let this partition's stream time pass the deadline for good (or a later one): the
        first of the newest run of its markers that each let it pass."""
        for p in {self.partition_of(m) for m in reach} - {partition}:
            echo = part.echo.get(p, {})
            for s, seen in part.heard_at.items():
                if s == p:
                    continue
                need = None
                for st, low, idle in reversed(seen):
                    if not (idle or low > deadline):
                        break
                    need = st
                if need is None or echo.get(s, -1) < need:
                    return False
        return True

    def links_ok(self, part: Partition, partition: int, deadline: int, cid: str) -> bool:
        """May ``cid``'s candidate with ``deadline`` be decided as far as links go: every
        partition has heard every link it sees that reaches ``cid`` (and sent the copies
        those call for) - live only, offline hears at once. A customer no link reaches
        has nothing on its way: the link that would reach it by ``deadline`` is in the
        book already (its stream passed the deadline), so it is not held up."""
        if not self.acked_links or not self.book.linked(cid):
            return True
        reach = self.book.reach(cid)
        waiting = part.waiting_ids
        for i in reach:
            pending = waiting.get(i)
            if not pending:
                continue
            for key, seen_from in list(pending.items()):
                if seen_from > deadline:
                    continue
                if not self._acked(part, partition, key[0], key[1]):
                    return False
                del pending[key]  # acknowledged for good (the heap drops it in order)
            if not pending:
                del waiting[i]
        return self._caught_up(part, partition, deadline, reach)

    # ------------------------------------------------------------ judging (refusals)

    def _judge(
        self, part: Partition, partition: int, wall_ms: int, force: bool = False
    ) -> list[Output]:
        out: list[Output] = []
        judging, clock = part.judging, part.clock
        while judging and (force or clock.releasable(judging[0][0])):
            entry = heapq.heappop(judging)
            _at, eid, n = entry
            if self._judged is not None:
                self._judged.append((part, entry))
            link = self.book.links.get(eid)
            if link is None:
                continue
            part.link_rows[eid] = [*link.row(), 1, 1, partition, n]
            why = self.book.verdict(link)
            if why is not None:
                self.counts["links_refused"] += 1
                out.append(Refused(link, why, wall_ms))
        return out

    # ------------------------------------------------------------ deciding against a group

    def grouped(
        self, state: CustomerState, cid: str, at: int, arrived_by: int
    ) -> tuple[CustomerState, dict[str, str]]:
        """The state a decision of ``cid`` with deadline ``at`` reads: its own, or merged
        with its group's; and, per event id that came from another id, how to name it."""
        if not self.book.linked(cid):
            return state, {}
        group = self.book.group(cid, at)
        if not group.members:
            return state, {}
        return self._merge(state, cid, group, at, arrived_by, self.partition_of(cid))

    def _merge(self, state: CustomerState, cid: str, group: Group, at: int, arrived_by: int,
               partition: int) -> tuple[CustomerState, dict[str, str]]:  # fmt: skip
        merged = _copy(state)
        names: dict[str, str] = {}
        withdrawn: dict[str, tuple[ConsentFact, str]] = {}
        for ch in {c.channel for c in state.consents}:
            own = state.consent_at(ch, at, arrived_by)
            if own is not None and own.withdrawn:
                withdrawn[ch] = (own, cid)
        for m in sorted(group.members):
            facts = self._facts_of(m, partition)
            if facts is None:
                continue
            link = group.members[m]
            name = f"by {m}{LINKED}{cid} at {human(link.t)}"
            # what pruning left of its older activity first, then its facts
            for ep in facts.epochs:
                merged.absorb(ep, self._ttl)
            for order in facts.orders.values():
                merged.absorb_order(order)
            seen: list[StateFact] = [*facts.purchases, *facts.returns, *facts.sessions]
            for f in seen:
                if merged.add(f, self._ttl):
                    names[f.event_id] = name
            for ep in facts.epochs:
                fp = ep.first_purchase
                if fp is not None:
                    names.setdefault(fp[0], name)
            for ch in {c.channel for c in facts.consents}:
                theirs = facts.consent_at(ch, at, arrived_by)
                if theirs is not None and theirs.withdrawn:
                    mine = withdrawn.get(ch)
                    if mine is None or (theirs.t, theirs.event_id) > (mine[0].t, mine[0].event_id):
                        withdrawn[ch] = (theirs, m)
                        names[theirs.event_id] = name
        if withdrawn:
            # a withdrawal in force anywhere in the group is the group's answer
            keep = [c for c in merged.consents if c.channel not in withdrawn]
            merged.consents = sorted([*keep, *(w for w, _ in withdrawn.values())],
                                     key=lambda c: c.t)  # fmt: skip
        self.counts["grouped_decisions"] += 1
        return merged, names

    # ------------------------------------------------------------ for people

    def link_stats(self) -> dict[str, int]:
        """Links read, unlinks, refused (dead-lettered) and known (the whole book)."""
        c = self.counts
        return {"links": c.get("links", 0), "unlinks": c.get("unlinks", 0),
                "refused": c.get("links_refused", 0), "known": len(self.book),
                "grouped_decisions": c.get("grouped_decisions", 0)}  # fmt: skip

    def links_of(self, cid: str) -> dict[str, Any]:
        """``cid``'s group as every link read so far makes it, and each link that touches
        its ids: where it came from and whether it stands."""
        group = self.book.group(cid, ALWAYS)
        links: list[dict[str, Any]] = []
        touching = {k.event_id: k for m in self.book.reach(cid) for k in self.book.touching(m)}
        for link in sorted(touching.values(), key=lambda k: (k.t, k.event_id)):
            why = self.book.verdict(link)
            o = link.origin
            links.append({
                "event_id": link.event_id, "kind": "unlink" if link.unlink else "link",
                "alias": link.alias, "linked_to": link.target, "occurred_at": iso(link.t),
                "source": link.source, "read_from": None if o is None else f"{o[0]}[{o[1]}]@{o[2]}",
                "refused": why,
            })  # fmt: skip
        return {
            "group": {m: {"via": k.describe()} for m, k in sorted(group.members.items())},
            "links": links,
        }

    # ------------------------------------------------------------ durable rows (worker)

    def link_rows(self, partition: int) -> tuple[dict[str, list[Any]], list[Any]]:
        """Rows changed since the last call (event id -> row), and the partition's head
        (links it read, links heard per source), taken for the changelog."""
        part = self.part(partition)
        rows, part.link_rows = part.link_rows, {}
        return rows, [part.link_seq, sorted(part.done.items())]

    def load_links(self, partition: int, rows: list[list[Any]], head: list[Any] | None) -> None:
        """A recovery: the links a partition had heard, and which of its own are judged."""
        part = self.part(partition)
        for r in rows:
            link = Link.from_row(r[:9])
            self.book.add(link)
            own, judged, source, n = bool(r[9]), bool(r[10]), int(r[11]), int(r[12])
            if own:
                part.own.add(link.event_id)
            if own and not judged:
                heapq.heappush(part.judging, (link.seen_from, link.event_id, n))
            if self.acked_links and n:
                # acknowledgements are not kept: the markers after a restart bring them
                self._wait_for(part, link, source, n)
        if head is not None:
            part.link_seq = int(head[0])
            part.done = {int(s): int(n) for s, n in head[1]}


def _origin(source: tuple[str, int]) -> tuple[str, int, int]:
    stream, offset = source
    topic, _, p = stream.rpartition(":")
    return (topic, int(p), offset)


def _summary_row(state: CustomerState) -> list[Any]:
    """What a customer's state keeps of activity its lists may have dropped: each epoch's
    span and first purchase, and its orders."""
    return [
        SUMMARY,
        [[e.start, e.end, e.first_purchase] for e in state.epochs],
        [[o.order_id, o.purchase, o.items, o.returns] for o in state.orders.values()],
    ]


def _facts(state: CustomerState) -> list[StateFact]:
    return [*state.purchases, *state.returns, *state.sessions, *state.consents]


def _copy(s: CustomerState) -> CustomerState:
    """A copy the group's facts can be added to without touching the stored state."""
    return CustomerState(
        purchases=list(s.purchases),
        returns=list(s.returns),
        sessions=list(s.sessions),
        consents=list(s.consents),
        orders={
            k: OrderFact(o.order_id, o.purchase, o.items, list(o.returns))
            for k, o in s.orders.items()
        },
        sent=s.sent,
        suppressed=s.suppressed,
        decided=s.decided,
        held=s.held,
        epochs=[Epoch(e.start, e.end, e.first_purchase, e.pruned_sessions) for e in s.epochs],
        nseq=s.nseq,
        applied=s.applied,
        zones=list(s.zones),
    )


def name_linked(reason: str | None, evidence: tuple[tuple[str, str, int], ...],
                names: dict[str, str]) -> str | None:  # fmt: skip
    """A reason that says which evidence came from a linked id."""
    if reason is None or not names:
        return reason
    said = [f"{_noun(t)} {eid} {names[eid]}" for t, eid, _ in evidence if eid in names]
    if not said:
        return reason
    return f"{reason} ({'; '.join(said)})"


def _noun(topic: str) -> str:
    return {"purchases": "purchase", "returns": "return", "sessions": "session",
            "consents": "consent change"}.get(topic, topic)  # fmt: skip


__all__ = ["FACT_TOPIC", "Linking", "is_shadow", "name_linked", "shadow_owner"]
