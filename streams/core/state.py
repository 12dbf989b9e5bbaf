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

The state is encoded as a compact orjson array for the changelog.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.candidate import Candidate, content_key

FORMAT_VERSION = 4
# 2: decided ids and sent messages without arrival frontiers; 3: absolute times, strings;
# 4: times as offsets from one base, codes for enums, sends' content keys rebuilt
READABLE_FORMATS = (2, 3, 4)
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
        return True

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
            # epoch can be within ``ttl`` of. Same result as the merge below, without it.
            last = self.epochs[-1]
            if last.start <= t:
                if t <= last.end:
                    return last
                if t <= last.end + ttl:
                    last.end = t
                    return last
        merged = Epoch(t, t)
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
            due = min(due, s.created_at + sends)
        for s in self.suppressed:
            due = min(due, s.created_at + sends)
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


def _drop_sent(items: list[SentFact], horizon: int, cap: int) -> list[SentFact]:
    """Keep those created at or after ``horizon``, then the last ``cap`` of them."""
    if items and any(s.created_at < horizon for s in items):
        items = [s for s in items if s.created_at >= horizon]
    return items[-cap:] if len(items) > cap else items


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


# ---------------------------------------------------------------- encoding


def _sent_row(s: SentFact) -> list[Any]:
    return [
        s.message_id,
        s.created_at,
        s.deadline,
        s.seq,
        s.trigger,
        s.channel,
        s.category,
        s.content,
        s.skus,
        s.cart_updated_at,
        s.order_id,
        s.action,
        s.rule,
        _a(s.arr),
    ]


def _sent(r: list[Any]) -> SentFact:
    m, c, d, q, tr, ch, cat, ct, sk, cu, o, a, rule, arr = r if len(r) == 14 else [*r, None]
    skus = None if sk is None else tuple(sk)
    return SentFact(m, c, d, q, tr, ch, cat, ct, skus, cu, o, a, rule, _n(arr))


def _a(arr: int) -> int | None:
    return None if arr == NEVER else arr


def _n(arr: int | None) -> int:
    return NEVER if arr is None else arr


# Format 4: what makes a state small. Times are offsets from one base (the first
# epoch's start) instead of 13-digit epoch milliseconds; an arrival frontier and a
# record time are offsets from the fact's own time (usually 0 or small); trigger,
# channel, category and action are indexes; a send's content key is rebuilt from its
# trigger, channel, SKUs and payload hash; a decided id that repeats a send's times is
# the id alone. The held candidates and the outbox keep format 3's rows: a restore
# reads them (``pending_of``) without decoding the rest.
_TRIGGERS = (
    "abandoned_cart",
    "welcome",
    "welcome_back",
    "product_recommendation",
    "review_request",
    "win_back",
    "replenishment",
    "promotion",
)
_CHANNELS = ("email", "sms", "push", "in_app")
_CATEGORIES = ("marketing", "transactional")
_ACTIONS = ("send", "rewrite", "suppress")


def _code(value: str, table: tuple[str, ...]) -> int | str:
    try:
        return table.index(value)
    except ValueError:
        return value  # not in the table (a newer contract): kept as written


def _uncode(value: int | str, table: tuple[str, ...]) -> str:
    return table[value] if isinstance(value, int) else value


def _ago(t: int, arr: int) -> int | None:
    """An arrival frontier as its distance below the fact's time."""
    return None if arr == NEVER else t - arr


def _back(t: int, ago: int | None) -> int:
    return NEVER if ago is None else t - ago


def _sent4(s: SentFact, b: int) -> list[Any]:
    phash = s.content.rpartition("|")[2]
    content: str = (
        phash if content_key(s.trigger, s.channel, s.skus, phash) == s.content else s.content
    )
    return [
        s.message_id,
        s.created_at - b,
        s.deadline - s.created_at,
        s.seq,
        _code(s.trigger, _TRIGGERS),
        _code(s.channel, _CHANNELS),
        _code(s.category, _CATEGORIES),
        content,
        s.skus,
        None if s.cart_updated_at is None else s.created_at - s.cart_updated_at,
        s.order_id,
        _code(s.action, _ACTIONS),
        s.rule,
        _ago(s.created_at, s.arr),
    ]


def _unsent4(r: list[Any], b: int) -> SentFact:
    m, c, d, q, tr, ch, cat, ct, sk, cu, o, a, rule, arr = r
    c += b
    trigger, channel = _uncode(tr, _TRIGGERS), _uncode(ch, _CHANNELS)
    skus = None if sk is None else tuple(sk)
    content = ct if "|" in ct else content_key(trigger, channel, skus, ct)
    return SentFact(
        m,
        c,
        c + d,
        q,
        trigger,
        channel,
        _uncode(cat, _CATEGORIES),
        content,
        skus,
        None if cu is None else c - cu,
        o,
        _uncode(a, _ACTIONS),
        rule,
        _back(c, arr),
    )


def encode(state: CustomerState) -> bytes:
    b = state.epochs[0].start if state.epochs else 0
    sends = {s.message_id: s for s in (*state.sent, *state.suppressed)}
    decided: list[list[Any]] = []
    for k, (c, d, q, a) in state.decided.items():
        s = sends.get(k)
        if s is not None and (s.created_at, s.deadline, s.seq, s.arr) == (c, d, q, a):
            decided.append([k])
        else:
            decided.append([k, c - b, d - c, q, _ago(c, a)])
    return orjson.dumps(
        [
            FORMAT_VERSION,
            [[p.event_id, p.t - b, p.order_id, p.items, _ago(p.t, p.arr), p.rt - p.t]
             for p in state.purchases],
            [[r.event_id, r.t - b, r.order_id, r.items, _ago(r.t, r.arr), r.rt - r.t]
             for r in state.returns],
            [[s.event_id, s.t - b, _ago(s.t, s.arr), s.rt - s.t] for s in state.sessions],
            [[c.event_id, c.t - b, _code(c.channel, _CHANNELS), c.withdrawn, _ago(c.t, c.arr),
              c.rt - c.t] for c in state.consents],
            [
                [
                    o.order_id,
                    None
                    if o.purchase is None
                    else [o.purchase[0], o.purchase[1] - b, _ago(o.purchase[1], o.purchase[2])],
                    o.items,
                    [[e, t - b, _ago(t, a), i] for e, t, a, i in o.returns],
                ]
                for o in state.orders.values()
            ],
            [_sent4(s, b) for s in state.sent],
            [_sent4(s, b) for s in state.suppressed],
            decided,
            [c.to_row() for c in state.held],
            [
                [
                    e.start - b,
                    e.end - e.start,
                    None
                    if e.first_purchase is None
                    else [e.first_purchase[0], e.first_purchase[1] - b,
                          _ago(e.first_purchase[1], e.first_purchase[2])],
                    e.pruned_sessions,
                ]
                for e in state.epochs
            ],
            state.nseq,
            {k: [o, t] for k, (o, t) in state.applied.items()},
            state.outbox,
            b,
        ]
    )  # fmt: skip


def _decode_v4(row: list[Any]) -> CustomerState:
    b = row[14]
    sent = [_unsent4(r, b) for r in row[6]]
    suppressed = [_unsent4(r, b) for r in row[7]]
    sends = {s.message_id: s for s in (*sent, *suppressed)}
    decided: dict[str, tuple[int, int, int, int]] = {}
    for r in row[8]:
        if len(r) == 1:
            s = sends[r[0]]
            decided[r[0]] = (s.created_at, s.deadline, s.seq, s.arr)
        else:
            c = r[1] + b
            decided[r[0]] = (c, c + r[2], r[3], _back(c, r[4]))

    def fp(x: list[Any] | None) -> tuple[str, int, int] | None:
        if x is None:
            return None
        t = x[1] + b
        return (x[0], t, _back(t, x[2]))

    return CustomerState(
        purchases=[PurchaseFact(e, t + b, o, _items(i), _back(t + b, a), rt + t + b)
                   for e, t, o, i, a, rt in row[1]],
        returns=[ReturnFact(e, t + b, o, _items(i), _back(t + b, a), rt + t + b)
                 for e, t, o, i, a, rt in row[2]],
        sessions=[SessionFact(e, t + b, _back(t + b, a), rt + t + b) for e, t, a, rt in row[3]],
        consents=[ConsentFact(e, t + b, _uncode(ch, _CHANNELS), w, _back(t + b, a), rt + t + b)
                  for e, t, ch, w, a, rt in row[4]],
        orders={
            o: OrderFact(
                o,
                fp(p),
                _items(i),
                [(e, t + b, _back(t + b, a), _items(ri)) for e, t, a, ri in rs],
            )
            for o, p, i, rs in row[5]
        },
        sent=sent,
        suppressed=suppressed,
        decided=decided,
        held=[Candidate.from_row(r) for r in row[9]],
        epochs=[Epoch(s + b, s + b + e, fp(f), ps) for s, e, f, ps in row[10]],
        nseq=row[11],
        applied={k: (v[0], v[1]) for k, v in row[12].items()},
        outbox=[(g, r, k, v) for g, r, k, v in row[13]],
    )  # fmt: skip


def _decided(r: list[Any]) -> tuple[int, int, int, int]:
    """(created, deadline, seq, arr); format 2 kept only (created, deadline)."""
    if len(r) == 5:
        return (r[1], r[2], r[3], _n(r[4]))
    return (r[1], r[2], 0, NEVER)


def _items(rows: list[list[Any]]) -> Items:
    return tuple((sku, qty) for sku, qty in rows)


def pending_of(data: bytes) -> tuple[list[tuple[int, str, int]], list[Any]]:
    """What a restore needs of an encoded state, without building all of it: (deadline,
    message_id, seq) of each held candidate, and the outbox. A restore of a million
    customers reads every state once; most hold nothing."""
    row = orjson.loads(data)
    if row[0] not in READABLE_FORMATS:
        raise ValueError(f"unknown customer state format {row[0]!r}")
    return [(c[11], c[0], c[13]) for c in row[9]], row[13]


def decode(data: bytes) -> CustomerState:
    row = orjson.loads(data)
    if row[0] not in READABLE_FORMATS:
        raise ValueError(f"unknown customer state format {row[0]!r}")
    if row[0] == 4:
        return _decode_v4(row)
    return CustomerState(
        purchases=[PurchaseFact(e, t, o, _items(i), _n(a), rt) for e, t, o, i, a, rt in row[1]],
        returns=[ReturnFact(e, t, o, _items(i), _n(a), rt) for e, t, o, i, a, rt in row[2]],
        sessions=[SessionFact(e, t, _n(a), rt) for e, t, a, rt in row[3]],
        consents=[ConsentFact(e, t, ch, w, _n(a), rt) for e, t, ch, w, a, rt in row[4]],
        orders={
            o: OrderFact(
                o,
                None if p is None else (p[0], p[1], _n(p[2])),
                _items(i),
                [(e, t, _n(a), _items(ri)) for e, t, a, ri in rs],
            )
            for o, p, i, rs in row[5]
        },
        sent=[_sent(r) for r in row[6]],
        suppressed=[_sent(r) for r in row[7]],
        decided={r[0]: _decided(r) for r in row[8]},
        held=[Candidate.from_row(r) for r in row[9]],
        epochs=[
            Epoch(s, e, None if fp is None else (fp[0], fp[1], _n(fp[2])), ps)
            for s, e, fp, ps in row[10]
        ],
        nseq=row[11],
        applied={k: (v, 2**62) if isinstance(v, int) else (v[0], v[1]) for k, v in row[12].items()},
        outbox=[(g, r, k, v) for g, r, k, v in row[13]],
    )
