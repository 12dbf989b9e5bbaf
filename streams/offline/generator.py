"""A small deterministic history generator covering every trigger and rule.

Same seed, same file. Each customer gets a short life (sessions, purchases,
returns, consent changes, candidate messages of every trigger type) laid
out so that every rule of the contract fires for some customers and not for
others. Every customer ends with a quiet "closing" session well after its
last deadline, so that live stream time passes every deadline and nothing
is left for the wall-clock release. Records are written per topic in event
time order (as the contract expects of producers).
"""

from __future__ import annotations

import random
import zlib
from datetime import UTC, datetime
from typing import Any

from streams.core.clock import iso

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR

SKUS = [f"SKU-{i}" for i in range(1, 41)]
CHANNELS = ["email", "sms", "push", "in_app"]
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
    "Australia/Sydney",
)
"""The time zones generated customers live in (the realistic ``--holds`` cases too)."""


def _ts(ms: int) -> str:
    return iso(ms)


class _Life:
    def __init__(self, rng: random.Random, cid: str, start: int) -> None:
        self.rng = rng
        self.cid = cid
        self.t = start
        self.records: list[tuple[int, int, dict[str, Any]]] = []  # (time, order, record)
        self.n = 0
        self.order_skus: dict[str, list[tuple[str, int]]] = {}

    def _add(self, t: int, topic: str, value: dict[str, Any], timestamp: int | None = None) -> None:
        rec: dict[str, Any] = {"topic": topic, "value": value}
        if timestamp is not None:
            rec["timestamp"] = _ts(timestamp)
        self.n += 1
        self.records.append((t, self.n, rec))

    def eid(self, p: str) -> str:
        return f"{p}-{self.cid}-{self.n}"

    def advance(self, lo: int, hi: int) -> int:
        self.t += self.rng.randint(lo, hi)
        return self.t

    @property
    def zone(self) -> str | None:
        """The customer's time zone, as their sessions name it (six of seven customers;
        from the id, not drawn, so the rest of a seed's history is as it was)."""
        h = zlib.crc32(self.cid.encode()) % (len(ZONES) + 1)
        return ZONES[h] if h < len(ZONES) else None  # the seventh: the default applies

    def session(self) -> None:
        t = self.advance(MIN, 6 * HOUR)
        sid = self.eid("sess")
        started: dict[str, Any] = {
            "event_id": self.eid("s"),
            "customer_id": self.cid,
            "occurred_at": _ts(t),
            "session_id": sid,
            "kind": "started",
        }
        if self.zone is not None:
            started["timezone"] = self.zone
        self._add(t, "sessions", started)
        self._add(
            t + 20 * MIN,
            "sessions",
            {
                "event_id": self.eid("s"),
                "customer_id": self.cid,
                "occurred_at": _ts(t + 20 * MIN),
                "session_id": sid,
                "kind": "ended",
            },
        )

    def purchase(self, skus: list[str] | None = None, at: int | None = None) -> str:
        t = at if at is not None else self.advance(MIN, 2 * DAY)
        oid = self.eid("o")
        chosen = skus or self.rng.sample(SKUS, self.rng.randint(1, 3))
        items = [(s, self.rng.randint(1, 2)) for s in chosen]
        self.order_skus[oid] = items
        self._add(
            t,
            "purchases",
            {
                "event_id": self.eid("p"),
                "customer_id": self.cid,
                "occurred_at": _ts(t),
                "order_id": oid,
                "items": [{"sku": s, "quantity": q, "unit_price": "9.99"} for s, q in items],
                "currency": "EUR",
            },
        )
        return oid

    def ret(self, oid: str, partial: bool) -> None:
        t = self.advance(HOUR, 3 * DAY)
        items = self.order_skus[oid]
        if partial:
            sku, qty = items[0]
            ritems = [{"sku": sku, "quantity": max(1, qty - 1) if qty > 1 else qty}]
        else:
            ritems = [{"sku": s, "quantity": q} for s, q in items]
        self._add(
            t,
            "returns",
            {
                "event_id": self.eid("r"),
                "customer_id": self.cid,
                "occurred_at": _ts(t),
                "order_id": oid,
                "items": ritems,
                "reason": "damaged",
            },
        )

    def consent(self, channel: str, status: str) -> None:
        t = self.advance(MIN, DAY)
        self._add(
            t,
            "consents",
            {
                "event_id": self.eid("k"),
                "customer_id": self.cid,
                "occurred_at": _ts(t),
                "channel": channel,
                "status": status,
            },
        )

    def message(
        self,
        trigger: str,
        ctx: dict[str, Any] | None = None,
        channel: str | None = None,
        category: str = "marketing",
        payload: dict[str, Any] | None = None,
        at: int | None = None,
        stale: bool = False,
        mid: str | None = None,
    ) -> int:
        t = at if at is not None else self.advance(MIN, DAY)
        context = dict(ctx or {})
        if self.zone is not None and zlib.crc32(f"{self.cid}{t}".encode()) % 5 == 0:
            context["timezone"] = self.zone  # automation sometimes knows it too
        value = {
            "message_id": mid or self.eid("m"),
            "customer_id": self.cid,
            "created_at": _ts(t),
            "trigger": trigger,
            "channel": channel or self.rng.choice(CHANNELS),
            "category": category,
            "context": context,
            "payload": payload
            if payload is not None
            else {"template": f"{trigger}-{self.rng.randint(1, 3)}"},
        }
        self._add(t, "outbound", value, timestamp=t + 30 * HOUR if stale else None)
        return t


def _life(rng: random.Random, cid: str, start: int) -> list[tuple[int, int, dict[str, Any]]]:
    """One customer's history: each phase draws from ``rng`` in turn, so the history of
    a seed never changes."""
    life = _Life(rng, cid, start)
    orders = _greetings_and_orders(life)
    _cart(life, orders)
    _after_orders(life, orders)
    _bursts(life)
    _close(life)
    return life.records


def _greetings_and_orders(life: _Life) -> list[str]:
    rng = life.rng
    r = rng.random
    # welcome: to a new or an existing customer
    if r() < 0.5:
        life.message("welcome")
    for _ in range(rng.randint(0, 3)):
        life.session()
    if r() < 0.6:
        life.message("welcome_back")
    orders = [life.purchase() for _ in range(rng.randint(0, 3))]
    if r() < 0.3:
        life.message("welcome")
    if r() < 0.2:
        life.consent(rng.choice(CHANNELS), "withdrawn")
        if r() < 0.5:
            life.consent(rng.choice(CHANNELS), "granted")
    return orders


def _cart(life: _Life, orders: list[str]) -> None:
    """An abandoned cart: sometimes bought within the settle delay, sometimes after it."""
    rng = life.rng
    r = rng.random
    if r() >= 0.7:
        return
    updated = life.advance(HOUR, DAY)
    created = updated + rng.randint(1, 10) * MIN
    life.message(
        "abandoned_cart",
        {"cart_id": life.eid("cart"), "cart_updated_at": _ts(updated), "skus": rng.sample(SKUS, 2)},
        at=created,
    )
    life.t = created
    choice = r()
    if choice < 0.4:
        orders.append(life.purchase(at=created + rng.randint(0, 4) * MIN))  # within settle
    elif choice < 0.6:
        orders.append(life.purchase(at=created + 6 * MIN))  # after the deadline: late
        life.t = created + 6 * MIN


def _after_orders(life: _Life, orders: list[str]) -> None:
    """Returns, review requests, recommendations, replenishment and a win-back."""
    rng = life.rng
    r = rng.random
    for oid in list(orders):
        if r() < 0.35:
            life.ret(oid, partial=r() < 0.4)
    if orders and r() < 0.8:
        oid = rng.choice(orders)
        skus = [s for s, _q in life.order_skus[oid]] if r() < 0.5 else None
        ctx: dict[str, Any] = {"order_id": oid}
        if skus:
            ctx["skus"] = skus
        life.message("review_request", ctx)
    if r() < 0.7:
        bought = [s for items in life.order_skus.values() for s, _q in items]
        skus = rng.sample(SKUS, 3) + (rng.sample(bought, min(2, len(bought))) if bought else [])
        rec_skus = list(dict.fromkeys(skus))
        rec_ctx: dict[str, Any] = {"skus": rec_skus}
        # A quarter of the customers get a recommendation with its signals' times, the
        # first one months old (stale signals). Chosen from the id, not drawn: adding it
        # left every other part of a seed's history as it was.
        if zlib.crc32(life.cid.encode()) % 4 == 0:
            at = life.advance(MIN, DAY)
            rec_ctx["basis"] = {
                s: _ts(at - (60 * DAY if i == 0 else (i + 1) * HOUR))
                for i, s in enumerate(rec_skus)
            }
            life.message("product_recommendation", rec_ctx, at=at)
        else:
            life.message("product_recommendation", rec_ctx)
    if r() < 0.3 and life.order_skus:
        items = [s for items in life.order_skus.values() for s, _q in items]
        life.message("replenishment", {"skus": items[:2]})
    if r() < 0.5:
        life.advance(0, 40 * DAY)
        life.message("win_back")


def _bursts(life: _Life) -> None:
    """Frequency cap, duplicate content, duplicate message id, transactional, stale."""
    rng = life.rng
    r = rng.random
    if r() < 0.5:
        ch = rng.choice(CHANNELS)
        base = life.advance(HOUR, DAY)
        same = r() < 0.5
        for i in range(rng.randint(2, 5)):
            life.message(
                "promotion",
                channel=ch,
                at=base + i * 10 * MIN,
                payload={"template": "promo", "n": 1 if same else i},
            )
        life.t = base + 60 * MIN
    if r() < 0.2:
        t = life.message("promotion")
        life.message("promotion", at=t, mid=f"dup-{life.cid}")
        life.message("promotion", at=t + MIN, mid=f"dup-{life.cid}")
        life.t = t + MIN
    if r() < 0.2:
        life.message("promotion", category="transactional")
    if r() < 0.1:
        life.message("promotion", stale=True)


def _close(life: _Life) -> None:
    """A closing event moves stream time past every deadline of this customer."""
    end = life.advance(2 * HOUR, 3 * HOUR)
    life._add(
        end,
        "sessions",
        {
            "event_id": life.eid("s"),
            "customer_id": life.cid,
            "occurred_at": _ts(end),
            "session_id": life.eid("close"),
            "kind": "ended",
        },
    )


def generate(customers: int, seed: int = 7, start: datetime | None = None) -> list[dict[str, Any]]:
    """History records for ``customers`` customers, per topic in event-time order."""
    rng = random.Random(seed)
    base = start or datetime(2026, 1, 5, tzinfo=UTC)
    base_ms = int(base.timestamp() * 1000)
    all_recs: list[tuple[int, int, int, dict[str, Any]]] = []
    for i in range(customers):
        cid = f"c-{i:06d}"
        offset = rng.randint(0, 20 * DAY)
        for t, n, rec in _life(rng, cid, base_ms + offset):
            all_recs.append((t, i, n, rec))
    all_recs.sort(key=lambda x: (x[0], x[1], x[2]))
    return [rec for _t, _i, _n, rec in all_recs]
