"""Identity-link cases for realistic histories (``generate --profile realistic --links``).

Two parts, each with its truth (the default policy):

- **guest checkouts** across the whole history (``GuestCheckouts``, used by the
  realistic cases): about a third of the purchases are made under a guest id
  (``g`` and the customer's number), linked to the account half a minute after the
  purchase, at checkout. Every case's truth stands as it was: the link is in force
  before any deadline the purchase decides (no case puts a purchase within a minute
  of such a deadline), so the guest's purchase counts exactly as the account's would;
- **link stories** (``link_cases``), customers of their own: a guest checkout linked
  only after the cart mail's deadline, a link whose record came late (after its
  partition's identities stream passed the deadline), an unlink before the purchase,
  a message to the guest id decided against the account's purchase, a chain of two
  links, a cycle (dead-lettered; the cart mail is sent), and a guest purchase read
  after its stream passed the cart mail's deadline (sent; late evidence).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from streams.contract.partitioning import partition_for
from streams.offline.scenarios import MIN, PURCHASE_DELAY, Truth, _iso

PARTITIONS = 8
"""The partition count the late-link story is built for (it puts a record on the same
partition as another): the test and the CLI default."""


def link_value(eid: str, alias: str, target: str, t: int, kind: str = "link",
               source: str = "checkout") -> dict[str, Any]:  # fmt: skip
    return {"event_id": eid, "customer_id": alias, "occurred_at": _iso(t), "linked_to": target,
            "kind": kind, "source": source}  # fmt: skip


class GuestCheckouts:
    """Which purchases of the realistic cases a guest makes (from the order id, not drawn:
    the rest of a seed's history stays as it was), and the link records they need."""

    def __init__(self) -> None:
        self.linked: set[str] = set()

    @staticmethod
    def guest_of(cid: str) -> str:
        return "g" + cid[1:]

    def buyer(self, cid: str, order_id: str) -> str:
        return self.guest_of(cid) if zlib.crc32(order_id.encode()) % 3 == 0 else cid

    def link(self, cid: str, bought: int) -> tuple[int, dict[str, Any]] | None:
        """The link record (record time, record) for a guest purchase at ``bought``: the
        first one of each guest only."""
        guest = self.guest_of(cid)
        if guest in self.linked:
            return None
        self.linked.add(guest)
        t = bought + 30_000
        value = link_value(f"i-{guest}", guest, cid, t)
        return t, {"topic": "identities", "value": value, "timestamp": _iso(t)}


STORIES = (
    "linked_after_deadline",
    "late_link",
    "unlinked_before_purchase",
    "message_to_guest",
    "chain",
    "cycle",
    "late_guest_purchase",
)


class _Story:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.n = 0
        self.records: list[dict[str, Any]] = []
        self.truth: list[Truth] = []

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}-{self.cid}-{self.n}"

    def add(self, record_ms: int, topic: str, value: dict[str, Any]) -> None:
        self.records.append({"topic": topic, "value": value, "timestamp": _iso(record_ms)})

    def link(self, alias: str, target: str, t: int, kind: str = "link",
             record_ms: int | None = None) -> None:  # fmt: skip
        self.add(t if record_ms is None else record_ms, "identities",
                 link_value(self._id("i"), alias, target, t, kind))  # fmt: skip

    def purchase(self, who: str, t: int, record_ms: int | None = None) -> None:
        self.add(t + PURCHASE_DELAY if record_ms is None else record_ms, "purchases", {
            "event_id": self._id("p"), "customer_id": who, "occurred_at": _iso(t),
            "order_id": self._id("o"), "currency": "EUR",
            "items": [{"sku": "SKU-9", "quantity": 1, "unit_price": "9.90"}]})  # fmt: skip

    def session(self, who: str, t: int) -> None:
        self.add(t, "sessions", {"event_id": self._id("s"), "customer_id": who,
                                 "occurred_at": _iso(t), "session_id": self._id("sess"),
                                 "kind": "started"})  # fmt: skip

    def cart(self, who: str, t: int, action: str, rule: str | None, why: str) -> None:
        mid = self._id("m")
        self.add(t, "outbound", {
            "message_id": mid, "customer_id": who, "created_at": _iso(t),
            "trigger": "abandoned_cart", "channel": "email", "category": "marketing",
            "context": {"cart_id": self._id("cart"), "cart_updated_at": _iso(t - MIN),
                        "skus": ["SKU-9"]},
            "payload": {"template": f"cart-{mid}"}})  # fmt: skip
        self.truth.append(Truth(mid, who, action, rule, "links", why))


def _near(cid: str, tag: str) -> str:
    """An id on the same partition as ``cid`` (of ``PARTITIONS``)."""
    want = partition_for(cid, PARTITIONS)
    return next(
        f"{tag}{i}" for i in range(10_000) if partition_for(f"{tag}{i}", PARTITIONS) == want
    )


def _build(story: str, s: _Story, t: int) -> None:
    cid = s.cid
    guest = "g" + cid[1:]
    s.session(cid, t - 10 * MIN)
    if story == "linked_after_deadline":
        s.purchase(guest, t + 2 * MIN)
        s.link(guest, cid, t + 20 * MIN)
        s.cart(cid, t, "send", None, "the guest who bought was linked to the account only "
               "15 minutes after the cart mail's deadline")  # fmt: skip
    elif story == "late_link":
        s.purchase(guest, t + 2 * MIN)
        # another guest on the same partition is linked at +30 min, and that record is read
        # first: this link's record, produced 40 minutes late, comes after its stream passed
        # the deadline
        other = _near(guest, f"x{cid}-")
        s.link(other, f"y{cid}", t + 30 * MIN)
        s.link(guest, cid, t + 3 * MIN, record_ms=t + 40 * MIN)
        s.cart(cid, t, "send", None, "the link's record came 37 minutes late, after the "
               "identities stream of its partition had passed the deadline")  # fmt: skip
    elif story == "unlinked_before_purchase":
        s.link(guest, cid, t - 2 * 60 * MIN)
        s.link(guest, cid, t - 60 * MIN, kind="unlink")
        s.purchase(guest, t + 2 * MIN)
        s.cart(cid, t, "send", None, "the guest was unlinked an hour before it bought")
    elif story == "message_to_guest":
        s.link(guest, cid, t - 60 * MIN)
        s.purchase(cid, t + 2 * MIN)
        s.cart(guest, t, "suppress", "cart_already_purchased", "the cart mail went to the "
               "guest id; the account it was linked to bought the cart")  # fmt: skip
    elif story == "chain":
        device = "d" + cid[1:]
        s.link(guest, device, t - 60 * MIN)
        s.link(device, cid, t - 30 * MIN)
        s.purchase(guest, t + 2 * MIN)
        s.cart(cid, t, "suppress", "cart_already_purchased", "guest -> device -> account: "
               "the guest's purchase counts for the account")  # fmt: skip
    elif story == "late_guest_purchase":
        s.link(guest, cid, t - 60 * MIN)
        # another customer on the guest's partition buys at +30 min, read first: the
        # guest's purchase of +2 min, produced 40 minutes late, comes after its stream
        # passed the cart mail's deadline
        s.purchase(_near(guest, f"z{cid}-"), t + 30 * MIN)
        s.purchase(guest, t + 2 * MIN, record_ms=t + 40 * MIN)
        why = "the linked guest bought, but its purchase was read after its stream passed "
        s.cart(cid, t, "send", None, why + "the deadline: sent, and reported as late evidence")
    else:  # cycle: a -> b -> c -> a; the closing link is refused, the rest stands
        b, c = "d" + cid[1:], "e" + cid[1:]
        s.link(cid, b, t - 60 * MIN)
        s.link(b, c, t - 50 * MIN)
        s.link(c, cid, t - 40 * MIN)
        s.purchase(guest, t + 2 * MIN)
        s.cart(cid, t, "send", None, "the guest who bought is not in the group (the cycle's "
               "closing link is refused and changes nothing)")  # fmt: skip


def link_cases(
    at: int, customers: int = 120
) -> Iterator[tuple[dict[str, Any] | None, Truth | None]]:
    """``customers`` customers from ``at``, an hour apart, cycling through the stories:
    their records (in no particular order) and their truths."""
    for i in range(customers):
        s = _Story(f"l{i:05d}")
        _build(STORIES[i % len(STORIES)], s, at + i * 60 * MIN)
        for rec in s.records:
            yield rec, None
        for truth in s.truth:
            yield None, truth


__all__ = ["GuestCheckouts", "link_cases"]
