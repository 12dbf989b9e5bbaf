"""Per-customer state: the facts the rules read, bounded in time and size.

Only what the longest rule window needs is kept: older purchases, returns,
sessions, sends and decided message ids are pruned against a *horizon*
derived from stream time (never from the wall clock, so the offline replay
and the worker prune alike and neither ever prunes something a pending
decision can still look at). All-time facts the rules need (has this
customer ever bought? how many sessions ever?) survive pruning as small
summaries. A withdrawn consent is never forgotten.

The state is encoded as a compact orjson array for the changelog: one
customer is typically a few hundred bytes (see ``bench/bench_state.py``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.candidate import Candidate

FORMAT_VERSION = 1


@dataclass(slots=True)
class PurchaseFact:
    event_id: str
    t: int
    order_id: str
    items: tuple[tuple[str, int], ...]  # (sku, quantity)


@dataclass(slots=True)
class ReturnFact:
    event_id: str
    t: int
    order_id: str
    items: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class SessionFact:
    event_id: str
    t: int


@dataclass(slots=True)
class ConsentFact:
    event_id: str
    t: int
    channel: str
    withdrawn: bool


@dataclass(slots=True)
class SentFact:
    """A message that went to the send queue, as the rules need to see it later."""

    message_id: str
    created_at: int
    deadline: int
    trigger: str
    channel: str
    category: str
    content: str
    skus: tuple[str, ...] | None  # as sent (after any rewrite)
    cart_updated_at: int | None
    order_id: str | None

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"


@dataclass(slots=True)
class CustomerState:
    purchases: list[PurchaseFact] = field(default_factory=list)
    returns: list[ReturnFact] = field(default_factory=list)
    sessions: list[SessionFact] = field(default_factory=list)  # started sessions only
    consents: list[ConsentFact] = field(default_factory=list)
    sent: list[SentFact] = field(default_factory=list)
    decided: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (created, deadline)
    held: list[Candidate] = field(default_factory=list)
    first_purchase: tuple[str, int] | None = None  # (event_id, t), all time
    pruned_sessions: int = 0  # started sessions pruned away, all before the horizon
    last_event: int = 0
    # input topic role -> highest offset applied for this customer (worker only): a record
    # at or below it was read again after a crash or a rebalance and is skipped.
    applied: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------ updates

    def add_purchase(self, fact: PurchaseFact) -> bool:
        if any(p.event_id == fact.event_id for p in self.purchases):
            return False
        _insort(self.purchases, fact)
        if self.first_purchase is None or fact.t < self.first_purchase[1]:
            self.first_purchase = (fact.event_id, fact.t)
        self._touch(fact.t)
        return True

    def add_return(self, fact: ReturnFact) -> bool:
        if any(r.event_id == fact.event_id for r in self.returns):
            return False
        _insort(self.returns, fact)
        self._touch(fact.t)
        return True

    def add_session(self, fact: SessionFact) -> bool:
        if any(s.event_id == fact.event_id for s in self.sessions):
            return False
        _insort(self.sessions, fact)
        self._touch(fact.t)
        return True

    def add_consent(self, fact: ConsentFact) -> bool:
        if any(c.event_id == fact.event_id for c in self.consents):
            return False
        # Stable insert: equal times keep topic order, so the later record wins a tie.
        _insort(self.consents, fact)
        self._touch(fact.t)
        return True

    def _touch(self, t: int) -> None:
        if t > self.last_event:
            self.last_event = t

    # ------------------------------------------------------------ queries

    def consent_at(self, channel: str, at: int) -> ConsentFact | None:
        """The latest consent change for ``channel`` at or before ``at``."""
        found = None
        for c in self.consents:
            if c.t > at:
                break
            if c.channel == channel:
                found = c
        return found

    def orders(self) -> dict[str, PurchaseFact]:
        return {p.order_id: p for p in self.purchases}

    def size(self) -> tuple[int, ...]:
        """Cheap fingerprint of how much is kept: pruning changed something iff it changed."""
        return (
            len(self.purchases),
            len(self.returns),
            len(self.sessions),
            len(self.consents),
            len(self.sent),
            len(self.decided),
            len(self.held),
        )

    # ------------------------------------------------------------ pruning

    def prune(
        self,
        horizon: int,
        sends_horizon: int,
        ids_horizon: int,
        max_events: int,
        max_sends: int,
        max_ids: int,
    ) -> None:
        """Drop what no pending or future decision can look at any more."""
        self.purchases = _drop_before(self.purchases, horizon, max_events)
        self.returns = _drop_before(self.returns, horizon, max_events)
        kept = _drop_before(self.sessions, horizon, max_events)
        self.pruned_sessions += len(self.sessions) - len(kept)
        self.sessions = kept
        self.consents = _prune_consents(self.consents, horizon)
        sent = [s for s in self.sent if s.created_at >= sends_horizon]
        self.sent = sent[-max_sends:]
        if self.decided:
            ids = {k: v for k, v in self.decided.items() if v[1] >= ids_horizon}
            if len(ids) > max_ids:
                ids = dict(sorted(ids.items(), key=lambda kv: kv[1][1])[-max_ids:])
            self.decided = ids


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


def encode(state: CustomerState) -> bytes:
    return orjson.dumps(
        [
            FORMAT_VERSION,
            [[p.event_id, p.t, p.order_id, p.items] for p in state.purchases],
            [[r.event_id, r.t, r.order_id, r.items] for r in state.returns],
            [[s.event_id, s.t] for s in state.sessions],
            [[c.event_id, c.t, c.channel, c.withdrawn] for c in state.consents],
            [
                [
                    s.message_id,
                    s.created_at,
                    s.deadline,
                    s.trigger,
                    s.channel,
                    s.category,
                    s.content,
                    s.skus,
                    s.cart_updated_at,
                    s.order_id,
                ]
                for s in state.sent
            ],
            [[k, *v] for k, v in state.decided.items()],
            [c.to_row() for c in state.held],
            state.first_purchase,
            state.pruned_sessions,
            state.last_event,
            state.applied,
        ]
    )


def _items(rows: list[list[Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((sku, qty) for sku, qty in rows)


def decode(data: bytes) -> CustomerState:
    row = orjson.loads(data)
    if row[0] != FORMAT_VERSION:
        raise ValueError(f"unknown customer state format {row[0]!r}")
    return CustomerState(
        purchases=[PurchaseFact(e, t, o, _items(i)) for e, t, o, i in row[1]],
        returns=[ReturnFact(e, t, o, _items(i)) for e, t, o, i in row[2]],
        sessions=[SessionFact(e, t) for e, t in row[3]],
        consents=[ConsentFact(e, t, ch, w) for e, t, ch, w in row[4]],
        sent=[
            SentFact(m, c, d, tr, ch, cat, ct, None if sk is None else tuple(sk), cu, o)
            for m, c, d, tr, ch, cat, ct, sk, cu, o in row[5]
        ],
        decided={r[0]: (r[1], r[2]) for r in row[6]},
        held=[Candidate.from_row(r) for r in row[7]],
        first_purchase=None if row[8] is None else (row[8][0], row[8][1]),
        pruned_sessions=row[9],
        last_event=row[10],
        applied=row[11] if len(row) > 11 else {},
    )
