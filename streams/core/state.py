"""Per-customer state: the facts the rules read, bounded in time and size.

Only what the longest rule window needs is kept: older purchases, returns,
sessions, sends and decided message ids are pruned against a *horizon*
derived from stream time (never from the wall clock). An order's SKUs and
returned SKUs are kept, compactly, for ``order_retention`` so that a late
review request is still checked. All-time facts the rules need (has this
customer ever bought? how many sessions ever?) survive pruning as per-epoch
summaries: an *epoch* is a run of activity with no gap longer than
``customer_ttl``, so "a customer with no activity for the TTL is forgotten"
is a property of event times, the same whenever a sweep happens to run. A
withdrawn consent is never forgotten.

Every fact remembers ``arr``, the frontier of its own stream when it was
read (see ``clock``): a fact that arrived after its stream had already
passed a candidate's deadline is late for that candidate, whatever order
the consumer happened to read the topics in. That is what makes decisions
a function of the streams rather than of the interleaving.

How a state is written to the changelog is ``streams.core.encoding``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from streams.core.candidate import Candidate

NEVER = -(2**62)
"""An arrival frontier before anything was read: every fact is in time."""
ALWAYS = 2**62

Items = tuple[tuple[str, int], ...]  # (sku, quantity)


@dataclass(slots=True)
class PurchaseFact:
    event_id: str
    t: int
    order_id: str
    items: Items
    arr: int = NEVER  # frontier of its stream when read
    rt: int = 0  # record time (for late-evidence reports)


@dataclass(slots=True)
class ReturnFact:
    event_id: str
    t: int
    order_id: str
    items: Items
    arr: int = NEVER
    rt: int = 0


@dataclass(slots=True)
class SessionFact:
    event_id: str
    t: int
    arr: int = NEVER
    rt: int = 0
    # the IANA zone the session named: kept in ``zones`` (encoded there), not with the fact
    tz: str | None = field(default=None, compare=False)


@dataclass(slots=True)
class ConsentFact:
    event_id: str
    t: int
    channel: str
    withdrawn: bool
    arr: int = NEVER
    rt: int = 0


Fact = PurchaseFact | ReturnFact | SessionFact | ConsentFact


@dataclass(slots=True)
class OrderFact:
    """What a review request needs of one order, long after its purchase is pruned."""

    order_id: str
    purchase: tuple[str, int, int] | None  # (event_id, t, arr); None until it is read
    items: Items
    returns: list[tuple[str, int, int, Items]]  # (event_id, t, arr, items)

    @property
    def last(self) -> int:
        """The newest fact's time (NEVER if none): asked for every order on every prune."""
        t = NEVER if self.purchase is None else self.purchase[1]
        for r in self.returns:
            if r[1] > t:
                t = r[1]
        return t


@dataclass(slots=True)
class Epoch:
    """A run of activity with no gap longer than ``customer_ttl``, and its all-time facts."""

    start: int
    end: int
    first_purchase: tuple[str, int, int] | None = None  # (event_id, t, arr)
    pruned_sessions: int = 0  # started sessions pruned away from the list


@dataclass(slots=True)
class SentFact:
    """A decided message, as the rules and the late-evidence checks need to see it later."""

    message_id: str
    created_at: int
    deadline: int
    seq: int  # the customer's read order of candidates
    trigger: str
    channel: str
    category: str
    content: str
    skus: tuple[str, ...] | None  # as sent (after any rewrite)
    cart_updated_at: int | None
    order_id: str | None
    action: str = "send"  # send | rewrite | suppress
    rule: str | None = None
    arr: int = NEVER  # frontier of its outbound stream when it was read

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"

    @property
    def kept_from(self) -> int:
        """What its retention counts from: its creation, or when it was read if later. A
        message read long after it was created (a late trigger, a file grouped by
        customer) stays for the send window after it was read, so that an event read
        soon after it, which would have changed its decision, finds it and is reported
        as late evidence."""
        return self.created_at if self.created_at >= self.arr else self.arr


@dataclass(slots=True)
class CustomerState:
    purchases: list[PurchaseFact] = field(default_factory=list)
    returns: list[ReturnFact] = field(default_factory=list)
    sessions: list[SessionFact] = field(default_factory=list)  # started sessions only
    consents: list[ConsentFact] = field(default_factory=list)
    orders: dict[str, OrderFact] = field(default_factory=dict)
    sent: list[SentFact] = field(default_factory=list)
    # suppressed by a rule that a later event could have lifted (late evidence both ways)
    suppressed: list[SentFact] = field(default_factory=list)
    # message id -> (created, deadline, seq, arr) of its copy first in deadline order
    decided: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    held: list[Candidate] = field(default_factory=list)
    epochs: list[Epoch] = field(default_factory=list)
    nseq: int = 0  # candidates read for this customer
    # Outputs recorded with the decision, published once this state is durable, re-emitted
    # after a crash until a later publish is known delivered: (generation, role, key, value).
    outbox: list[tuple[int, str, str, str]] = field(default_factory=list)
    # "topic:partition" of the stream a record came from -> (highest offset applied for this
    # customer, newest record time among them): a record at or below both was read again
    # after a crash, a rebalance or a repeated re-route, and is skipped. A record below the
    # offset but newer is from a topic deleted and created again, and is applied.
    applied: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Time pruning can change nothing until the horizons' base (``Horizons.at``) passes
    # this: the oldest kept fact's time plus its kind's window, as of the last full prune,
    # lowered by whoever adds a fact since (``Engine``). Most prunes then stop after a
    # comparison and the size caps. Never encoded: a decoded state starts at NEVER (prune).
    due: int = field(default=NEVER, compare=False, repr=False)
    # the time zones the customer's sessions named, (t, zone, arr) in time order (pruned
    # with the events): quiet hours read the latest at or before a deadline
    zones: list[tuple[int, str, int]] = field(default_factory=list)

    # ------------------------------------------------------------ updates

    def add_purchase(self, fact: PurchaseFact, ttl: int) -> bool:
        if any(p.event_id == fact.event_id for p in self.purchases):
            return False
        _insort(self.purchases, fact)
        ep = self.touch(fact.t, ttl)
        if ep.first_purchase is None or fact.t < ep.first_purchase[1]:
            ep.first_purchase = (fact.event_id, fact.t, fact.arr)
        order = self.orders.get(fact.order_id)
        if order is None:
            self.orders[fact.order_id] = OrderFact(
                fact.order_id, (fact.event_id, fact.t, fact.arr), fact.items, []
            )
        elif order.purchase is None:
            order.purchase = (fact.event_id, fact.t, fact.arr)
            order.items = fact.items
        return True

    def add_return(self, fact: ReturnFact, ttl: int) -> bool:
        if any(r.event_id == fact.event_id for r in self.returns):
            return False
        _insort(self.returns, fact)
        self.touch(fact.t, ttl)
        order = self.orders.get(fact.order_id)
        if order is None:
            order = self.orders[fact.order_id] = OrderFact(fact.order_id, None, (), [])
        if not any(r[0] == fact.event_id for r in order.returns):
            order.returns.append((fact.event_id, fact.t, fact.arr, fact.items))
        return True

    def add_session(self, fact: SessionFact, ttl: int) -> bool:
        if any(s.event_id == fact.event_id for s in self.sessions):
            return False
        _insort(self.sessions, fact)
        self.touch(fact.t, ttl)
        if fact.tz is not None:
            # in (time, zone) order, whatever the order sessions are read in; a session
            # naming the zone already in force adds nothing
            zones = self.zones
            entry = (fact.t, fact.tz, fact.arr)
            i = len(zones)
            while i and zones[i - 1][:2] > entry[:2]:
                i -= 1
            if not (i and zones[i - 1][1] == fact.tz and zones[i - 1][2] <= fact.arr):
                zones.insert(i, entry)
        return True

    def zone_at(self, t: int, arrived_by: int) -> str | None:
        """The zone of the latest session at or before ``t`` read by ``arrived_by``."""
        for zt, zone, arr in reversed(self.zones):
            if zt <= t and arr <= arrived_by:
                return zone
        return None

    def add_consent(self, fact: ConsentFact, ttl: int) -> bool:
        if any(c.event_id == fact.event_id for c in self.consents):
            return False
        # Stable insert: equal times keep topic order, so the later record wins a tie.
        _insort(self.consents, fact)
        self.touch(fact.t, ttl)
        return True

    def add(self, fact: Fact, ttl: int) -> bool:
        if isinstance(fact, PurchaseFact):
            return self.add_purchase(fact, ttl)
        if isinstance(fact, ReturnFact):
            return self.add_return(fact, ttl)
        if isinstance(fact, SessionFact):
            return self.add_session(fact, ttl)
        return self.add_consent(fact, ttl)

    def touch(self, t: int, ttl: int) -> Epoch:
        """Record activity at ``t``; returns its epoch (merging epochs it bridges).

        Epochs are sorted and more than ``ttl`` apart, so a point can only join its two
        neighbours: one pass in order is enough, whatever order activity is read in."""
        if self.epochs:
            # Nearly always: activity inside or just after the newest epoch, which no other
            # epoch can be within ``ttl`` of. Same result as ``absorb``, without it.
            last = self.epochs[-1]
            if last.start <= t:
                if t <= last.end:
                    return last
                if t <= last.end + ttl:
                    last.end = t
                    return last
        return self.absorb(Epoch(t, t), ttl)

    def absorb(self, other: Epoch, ttl: int) -> Epoch:
        """Take in an epoch (a linked id's: ``linking``; one point: ``touch``), merging the
        epochs it bridges."""
        merged = Epoch(other.start, other.end, other.first_purchase, other.pruned_sessions)
        kept: list[Epoch] = []
        for ep in self.epochs:
            if ep.start - ttl <= merged.end and merged.start <= ep.end + ttl:
                merged = _merge(merged, ep)
            else:
                kept.append(ep)
        kept.append(merged)
        kept.sort(key=lambda e: e.start)
        self.epochs = kept
        return merged

    def absorb_order(self, o: OrderFact) -> None:
        """Take in another state's order (a linked id's), its purchase and returns."""
        mine = self.orders.get(o.order_id)
        if mine is None:
            self.orders[o.order_id] = OrderFact(o.order_id, o.purchase, o.items, list(o.returns))
            return
        if mine.purchase is None and o.purchase is not None:
            mine.purchase, mine.items = o.purchase, o.items
        have = {r[0] for r in mine.returns}
        mine.returns.extend(r for r in o.returns if r[0] not in have)

    @property
    def last_activity(self) -> int:
        return self.epochs[-1].end if self.epochs else NEVER

    # ------------------------------------------------------------ queries

    def epoch_at(self, t: int) -> Epoch | None:
        """The epoch ``t`` falls in (activity at ``t`` was recorded, so there is one)."""
        for ep in reversed(self.epochs):
            if ep.start <= t:
                return ep if t <= ep.end else None
        return None

    def consent_at(self, channel: str, at: int, arrived_by: int) -> ConsentFact | None:
        """The latest consent change for ``channel`` at or before ``at`` (and read in time)."""
        found = None
        for c in self.consents:
            if c.t > at:
                break
            if c.channel == channel and c.arr <= arrived_by:
                found = c
        return found

    def size(self) -> tuple[int, ...]:
        """Cheap fingerprint of how much is kept: pruning changed something iff it changed."""
        return (
            len(self.purchases),
            len(self.returns),
            len(self.sessions),
            len(self.consents),
            len(self.orders),
            len(self.sent),
            len(self.suppressed),
            len(self.decided),
            len(self.held),
            len(self.epochs),
            len(self.outbox),
        )

    # ------------------------------------------------------------ pruning

    def prune(self, h: Horizons, caps: Caps) -> None:
        """Drop what no pending or future decision can look at any more."""
        if (
            h.at <= self.due
            and len(self.purchases) <= caps.events
            and len(self.returns) <= caps.events
            and len(self.sessions) <= caps.events
            and len(self.orders) <= caps.orders
            and len(self.sent) <= caps.sends
            and len(self.suppressed) <= caps.sends
            and len(self.decided) <= caps.ids
        ):
            return  # nothing past a horizon, nothing over a cap: what a full prune finds
        self._prune(h, caps)
        self.due = self._due(h)

    def _due(self, h: Horizons) -> int:
        """The lowest ``Horizons.at`` at which a time prune could drop something again."""
        at = h.at
        ev, due = at - h.events, ALWAYS
        for facts in (self.purchases, self.returns, self.sessions):
            if facts and facts[0].t + ev < due:
                due = facts[0].t + ev
        for c in self.consents:  # the ones before the horizon are the kept withdrawals
            if c.t >= h.events:
                due = min(due, c.t + ev)
                break
        if self.orders:
            due = min(due, min(o.last for o in self.orders.values()) + at - h.orders)
        sends = at - h.sends
        for s in self.sent:
            due = min(due, s.kept_from + sends)
        for s in self.suppressed:
            due = min(due, s.kept_from + sends)
        if self.decided:
            due = min(due, min(v[1] for v in self.decided.values()) + at - h.ids)
        if len(self.epochs) > 1:
            due = min(due, min(e.end for e in self.epochs[:-1]) + at - h.epochs)
        return due

    def _prune(self, h: Horizons, caps: Caps) -> None:
        self.purchases = _drop_before(self.purchases, h.events, caps.events)
        self.returns = _drop_before(self.returns, h.events, caps.events)
        kept = _drop_before(self.sessions, h.events, caps.events)
        if len(kept) != len(self.sessions):
            gone = self.sessions[: len(self.sessions) - len(kept)]
            for s in gone:
                ep = self.epoch_at(s.t)
                if ep is not None:
                    ep.pruned_sessions += 1
            self.sessions = kept
        self.consents = _prune_consents(self.consents, h.events)
        self.zones = _prune_zones(self.zones, h.events)
        # Most prunes drop nothing: each collection is rebuilt only when something in it
        # is past its horizon or over its cap (prune was 22% of offline replay).
        orders = self.orders
        if orders and (
            len(orders) > caps.orders or any(o.last < h.orders for o in orders.values())
        ):
            orders = {k: o for k, o in orders.items() if o.last >= h.orders}
            if len(orders) > caps.orders:
                orders = dict(sorted(orders.items(), key=lambda kv: kv[1].last)[-caps.orders :])
            self.orders = orders
        self.sent = _drop_sent(self.sent, h.sends, caps.sends)
        self.suppressed = _drop_sent(self.suppressed, h.sends, caps.sends)
        decided = self.decided
        if decided and (len(decided) > caps.ids or any(v[1] < h.ids for v in decided.values())):
            ids = {k: v for k, v in decided.items() if v[1] >= h.ids}
            if len(ids) > caps.ids:
                ids = dict(sorted(ids.items(), key=lambda kv: kv[1][1])[-caps.ids :])
            self.decided = ids
        if len(self.epochs) > 1:
            self.epochs = [e for e in self.epochs[:-1] if e.end >= h.epochs] + self.epochs[-1:]

    def forget(self) -> CustomerState | None:
        """What is kept of a customer inactive for the TTL: a withdrawn consent, offsets."""
        latest = {c.channel: c for c in self.consents}
        withdrawn = sorted((c for c in latest.values() if c.withdrawn), key=lambda c: c.t)
        if not withdrawn and not self.held and not self.outbox:
            return None
        return CustomerState(
            consents=withdrawn,
            held=self.held,
            nseq=self.nseq,
            applied=self.applied,
            outbox=self.outbox,
        )


@dataclass(slots=True, frozen=True)
class Horizons:
    """Oldest time kept, per kind of fact (from the engine's stream-time horizon)."""

    events: int
    sends: int
    ids: int
    orders: int
    epochs: int
    # the stream-time base they lie below (each by its kind's window): what ``due`` is
    # compared with. Required: a default here would let a forgotten one skip time pruning.
    at: int


@dataclass(slots=True, frozen=True)
class Caps:
    events: int
    sends: int
    ids: int
    orders: int


NO_HORIZON = Horizons(NEVER, NEVER, NEVER, NEVER, NEVER, NEVER)


def _merge(a: Epoch, b: Epoch) -> Epoch:
    fp = a.first_purchase
    if b.first_purchase is not None and (fp is None or b.first_purchase[1] < fp[1]):
        fp = b.first_purchase
    return Epoch(
        min(a.start, b.start), max(a.end, b.end), fp, a.pruned_sessions + b.pruned_sessions
    )


def _insort(items: list[Any], fact: Any) -> None:
    if not items or items[-1].t <= fact.t:
        items.append(fact)
    else:
        bisect.insort_right(items, fact, key=lambda f: f.t)


def _drop_before(items: list[Any], horizon: int, cap: int) -> list[Any]:
    i = 0
    while i < len(items) and items[i].t < horizon:
        i += 1
    kept = items[i:] if i else items
    return kept[-cap:] if len(kept) > cap else kept


LATE_KEPT = 4
"""Per customer, decided messages kept for late evidence only (see ``trim_late_only``)."""


def trim_late_only(kept: list[SentFact], late_only: int) -> None:
    """At most ``LATE_KEPT`` messages kept for late evidence only, the newest.

    A message read more than ``late_only`` (the longest settle delay plus the send
    window) after its creation is invisible to every decision: those with earlier
    deadlines were read before it, later ones only count sends created within their
    window. It stays (for the send window from when it was read) so that an event read
    soon after it, which would have changed its decision, is reported. A history
    produced again and again re-sends, each pass, what ``duplicate_message`` no longer
    remembers: without a bound those copies would pile up. The trim happens when a
    message is decided, so it is the same in every run."""
    drop = sum(1 for s in kept if s.created_at < s.arr - late_only) - LATE_KEPT
    if drop <= 0:
        return
    out = []
    for s in kept:
        if drop and s.created_at < s.arr - late_only:
            drop -= 1
            continue
        out.append(s)
    kept[:] = out


def _drop_sent(items: list[SentFact], horizon: int, cap: int) -> list[SentFact]:
    """Keep those created at or after ``horizon``, then the last ``cap`` of them."""
    if items and any(s.kept_from < horizon for s in items):
        items = [s for s in items if s.kept_from >= horizon]
    return items[-cap:] if len(items) > cap else items


def _prune_zones(zones: list[tuple[int, str, int]], horizon: int) -> list[tuple[int, str, int]]:
    """Keep every zone named after the horizon and the last one before it: a deadline
    past the horizon never looks further back."""
    i = 0
    while i + 1 < len(zones) and zones[i + 1][0] < horizon:
        i += 1
    return zones[i:] if i else zones


def _prune_consents(consents: list[ConsentFact], horizon: int) -> list[ConsentFact]:
    """Keep every change after the horizon plus, per channel, the last one before it."""
    if not consents or consents[0].t >= horizon:
        return consents
    base: dict[str, ConsentFact] = {}
    recent: list[ConsentFact] = []
    for c in consents:
        if c.t < horizon:
            base[c.channel] = c
        else:
            recent.append(c)
    # A granted consent as the base is the same as no record at all: drop it.
    kept = sorted((c for c in base.values() if c.withdrawn), key=lambda c: c.t)
    return kept + recent
