"""Realistic histories with ground truth: automation that misbehaves as it does in the field.

Each customer lives through one *case*, a small story built so that the
contract decides it one way, for a reason the case states: a cart mail
computed from a snapshot taken before the purchase landed, a purchase that
reaches its topic a minute and a half late (but in order, before the cart's
settle delay ends), a recommendation computed from last week's data, a retry
that re-sends a message id, a promotion burst, a trigger that sat a day in a
queue, a withdrawn (and a re-granted) consent, a fully and a partly returned
order asked for a review, customers who only ever receive messages. The
truth is written from how the case was built, never by running the rules:
``truth.jsonl`` holds, per candidate, the decision the contract requires,
the rule, and why.

Records are streamed out in record-time order with bounded memory (a heap of
the records of the cases that overlap in time), so millions of records need no
more memory than the customers active at one time. Purchases come from producer instances out of
order by up to ``jitter_ms`` (default 3 s) within their topic, as several
producer instances are; see ``DEFAULT_JITTER`` for why the truth holds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
PURCHASE_DELAY = 90_000  # purchases reach their topic 90 s after they happen
DEFAULT_JITTER = 3_000
"""Purchases come from several producer instances whose clocks and queues differ by up to
this much: within the topic they are out of order by up to it. No case puts a purchase
within a minute of a deadline it decides, so with the contract's default lateness (0) a
purchase that is out of order is still read before its stream passes that deadline: the
truth does not depend on the lateness setting (tested with both)."""
START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


@dataclass(frozen=True, slots=True)
class Truth:
    message_id: str
    customer_id: str
    action: str
    rule: str | None
    case: str
    why: str


class _Case:
    """Builder of one customer's records and truths."""

    def __init__(self, cid: str, rng: random.Random, jitter_ms: int = 0) -> None:
        self.cid = cid
        self.rng = rng
        self.jitter_ms = jitter_ms
        self.n = 0
        self.records: list[tuple[int, dict[str, Any]]] = []
        self.truth: list[Truth] = []

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}-{self.cid}-{self.n}"

    def _add(self, record_ms: int, topic: str, value: dict[str, Any]) -> None:
        self.records.append(
            (record_ms, {"topic": topic, "value": value, "timestamp": _iso(record_ms)})
        )

    def session(self, t: int) -> None:
        sid = self._id("sess")
        for kind, at in (("started", t), ("ended", t + 20 * MIN)):
            self._add(
                at,
                "sessions",
                {
                    "event_id": self._id("s"),
                    "customer_id": self.cid,
                    "occurred_at": _iso(at),
                    "session_id": sid,
                    "kind": kind,
                },
            )

    guests: Any = None  # streams.offline.links.GuestCheckouts when links are generated

    def purchase(self, t: int, skus: list[str]) -> str:
        order = self._id("o")
        buyer = self.cid
        if self.guests is not None:
            buyer = self.guests.buyer(self.cid, order)
            if buyer != self.cid:
                linked = self.guests.link(self.cid, t)
                if linked is not None:
                    self.records.append(linked)
        self._add(
            t + PURCHASE_DELAY + (self.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0),
            "purchases",
            {
                "event_id": self._id("p"),
                "customer_id": buyer,
                "occurred_at": _iso(t),
                "order_id": order,
                "currency": "EUR",
                "items": [{"sku": s, "quantity": 1, "unit_price": "19.90"} for s in skus],
            },
        )
        return order

    def ret(self, t: int, order: str, skus: list[str]) -> None:
        self._add(
            t,
            "returns",
            {
                "event_id": self._id("r"),
                "customer_id": self.cid,
                "occurred_at": _iso(t),
                "order_id": order,
                "items": [{"sku": s, "quantity": 1} for s in skus],
                "reason": "did not fit",
            },
        )

    def consent(self, t: int, status: str, channel: str = "email") -> None:
        self._add(
            t,
            "consents",
            {
                "event_id": self._id("k"),
                "customer_id": self.cid,
                "occurred_at": _iso(t),
                "channel": channel,
                "status": status,
            },
        )

    def message(
        self,
        t: int,
        trigger: str,
        action: str,
        rule: str | None,
        why: str,
        context: dict[str, Any] | None = None,
        channel: str = "email",
        record_ms: int | None = None,
        mid: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> str:
        mid = mid or self._id("m")
        self._add(
            record_ms if record_ms is not None else t,
            "outbound",
            {
                "message_id": mid,
                "customer_id": self.cid,
                "created_at": _iso(t),
                "trigger": trigger,
                "channel": channel,
                "category": "marketing",
                "context": context or {},
                "payload": payload or {"template": f"{trigger}-{mid}"},
            },
        )
        self.truth.append(Truth(mid, self.cid, action, rule, self.case, why))
        return mid

    case = ""


def _cart_after_purchase(c: _Case, t: int) -> None:
    c.session(t - 10 * MIN)
    bought = t + c.rng.randint(1, 4) * MIN
    c.purchase(bought, ["SKU-1", "SKU-2"])
    c.message(
        t + 30_000,
        "abandoned_cart",
        "suppress",
        "cart_already_purchased",
        "the cart mail was computed from a snapshot taken before the purchase, which "
        "happened before the cart's settle delay ended",
        {"cart_id": c._id("cart"), "cart_updated_at": _iso(t), "skus": ["SKU-1"]},
    )


def _cart_abandoned(c: _Case, t: int) -> None:
    c.session(t - 10 * MIN)
    c.message(
        t + 30 * MIN,
        "abandoned_cart",
        "send",
        None,
        "no purchase followed the cart",
        {"cart_id": c._id("cart"), "cart_updated_at": _iso(t), "skus": ["SKU-3"]},
    )


def _cart_bought_after_settle(c: _Case, t: int) -> None:
    c.session(t - 10 * MIN)
    c.message(
        t + 30 * MIN,
        "abandoned_cart",
        "send",
        None,
        "the purchase came 20 minutes after the cart mail's settle delay ended",
        {"cart_id": c._id("cart"), "cart_updated_at": _iso(t), "skus": ["SKU-4"]},
    )
    c.purchase(t + 55 * MIN, ["SKU-4"])


def _welcome_back_new(c: _Case, t: int) -> None:
    c.session(t - 2 * HOUR)
    c.message(
        t,
        "welcome_back",
        "suppress",
        "welcome_back_to_new_customer",
        "one session before the welcome-back: a new customer, not a returning one",
    )


def _welcome_back_returning(c: _Case, t: int) -> None:
    for d in (20, 12, 3):
        c.session(t - d * DAY)
    c.message(t, "welcome_back", "send", None, "three sessions over three weeks")


def _welcome_existing(c: _Case, t: int) -> None:
    c.session(t - 3 * DAY)
    c.purchase(t - 3 * DAY + 10 * MIN, ["SKU-5"])
    c.message(
        t,
        "welcome",
        "suppress",
        "welcome_to_existing_customer",
        "the customer bought three days before the welcome",
    )


def _welcome_new(c: _Case, t: int) -> None:
    c.session(t - 30 * MIN)
    c.message(t, "welcome", "send", None, "a first session, no purchase")


def _rec_recent_purchase(c: _Case, t: int) -> None:
    c.purchase(t - 4 * DAY, ["SKU-10"])
    c.message(
        t,
        "product_recommendation",
        "rewrite",
        "recommends_recent_purchase",
        "computed from last week's data: SKU-10 was bought four days ago",
        {"skus": ["SKU-10", "SKU-11"]},
    )


def _rec_only_purchased(c: _Case, t: int) -> None:
    c.purchase(t - 2 * DAY, ["SKU-12"])
    c.message(
        t,
        "product_recommendation",
        "suppress",
        "recommends_recent_purchase",
        "the only recommended product was bought two days ago",
        {"skus": ["SKU-12"]},
    )


def _rec_returned(c: _Case, t: int) -> None:
    order = c.purchase(t - 20 * DAY, ["SKU-20"])
    c.ret(t - 15 * DAY, order, ["SKU-20"])
    c.message(
        t,
        "product_recommendation",
        "rewrite",
        "recommends_returned_product",
        "SKU-20 was returned 15 days ago (bought 20 days ago: outside the recent-purchase window)",
        {"skus": ["SKU-20", "SKU-21"]},
    )


def _rec_stale_signal(c: _Case, t: int) -> None:
    c.message(
        t,
        "product_recommendation",
        "rewrite",
        "recommends_from_stale_signal",
        "SKU-30 was chosen from browsing 90 days ago (limit 30 days), SKU-31 from yesterday",
        {
            "skus": ["SKU-30", "SKU-31"],
            "basis": {"SKU-30": _iso(t - 90 * DAY), "SKU-31": _iso(t - DAY)},
        },
    )


def _rec_all_stale(c: _Case, t: int) -> None:
    c.message(
        t,
        "product_recommendation",
        "suppress",
        "recommends_from_stale_signal",
        "every recommended product was chosen from browsing months ago",
        {"skus": ["SKU-32"], "basis": {"SKU-32": _iso(t - 120 * DAY)}},
    )


def _retry(c: _Case, t: int) -> None:
    mid = c.message(t, "promotion", "send", None, "the first copy")
    c.message(
        t,
        "promotion",
        "suppress",
        "duplicate_message",
        "automation retried the same message id two minutes later",
        record_ms=t + 2 * MIN,
        mid=mid,
        payload={"template": f"promotion-{mid}"},
    )


def _burst(c: _Case, t: int) -> None:
    for i in range(3):
        c.message(
            t + i * HOUR, "promotion", "send", None, f"burst message {i + 1} of 4: under the cap"
        )
    c.message(
        t + 3 * HOUR,
        "promotion",
        "suppress",
        "frequency_cap",
        "the fourth promotion on email within 24 hours (limit 3)",
    )


def _stale(c: _Case, t: int) -> None:
    c.message(
        t,
        "promotion",
        "suppress",
        "stale_trigger",
        "the trigger sat 26 hours in a queue before it reached Kafka",
        record_ms=t + 26 * HOUR,
    )


def _consent(c: _Case, t: int) -> None:
    c.consent(t - 5 * DAY, "withdrawn")
    c.message(
        t, "promotion", "suppress", "consent_withdrawn", "email consent withdrawn 5 days before"
    )


def _receive_only(c: _Case, t: int) -> None:
    c.message(t, "promotion", "send", None, "a customer who only receives messages")
    c.message(t + 3 * DAY, "promotion", "send", None, "a customer who only receives messages")


def _review_returned(c: _Case, t: int) -> None:
    order = c.purchase(t - 10 * DAY, ["SKU-30"])
    c.ret(t - 5 * DAY, order, ["SKU-30"])
    c.message(
        t,
        "review_request",
        "suppress",
        "review_request_for_returned_order",
        "the whole order was returned five days before",
        {"order_id": order},
    )


def _review_kept(c: _Case, t: int) -> None:
    order = c.purchase(t - 10 * DAY, ["SKU-31"])
    c.message(t, "review_request", "send", None, "the order was kept", {"order_id": order})


def _review_partly_returned(c: _Case, t: int) -> None:
    order = c.purchase(t - 10 * DAY, ["SKU-32", "SKU-33"])
    c.ret(t - 5 * DAY, order, ["SKU-32"])
    c.message(
        t,
        "review_request",
        "send",
        None,
        "a partial return: SKU-33 of the order was kept",
        {"order_id": order},
    )


def _consent_regranted(c: _Case, t: int) -> None:
    c.consent(t - 9 * DAY, "withdrawn")
    c.consent(t - 2 * DAY, "granted")
    c.message(t, "promotion", "send", None, "email consent withdrawn, then granted again")


def _win_back_active(c: _Case, t: int) -> None:
    c.session(t - 3 * DAY)
    c.message(t, "win_back", "suppress", "win_back_active_customer", "a session three days before")


def _win_back_lapsed(c: _Case, t: int) -> None:
    c.session(t - 50 * DAY)
    c.message(t, "win_back", "send", None, "the last session was 50 days before (window 30 days)")


CASES: dict[str, Callable[[_Case, int], None]] = {
    "cart_after_purchase": _cart_after_purchase,
    "cart_abandoned": _cart_abandoned,
    "cart_bought_after_settle": _cart_bought_after_settle,
    "welcome_back_new": _welcome_back_new,
    "welcome_back_returning": _welcome_back_returning,
    "welcome_existing": _welcome_existing,
    "welcome_new": _welcome_new,
    "rec_recent_purchase": _rec_recent_purchase,
    "rec_only_purchased": _rec_only_purchased,
    "rec_returned": _rec_returned,
    "rec_stale_signal": _rec_stale_signal,
    "rec_all_stale": _rec_all_stale,
    "retry": _retry,
    "burst": _burst,
    "stale": _stale,
    "consent_withdrawn": _consent,
    "receive_only": _receive_only,
    "review_returned": _review_returned,
    "review_kept": _review_kept,
    "review_partly_returned": _review_partly_returned,
    "consent_regranted": _consent_regranted,
    "win_back_active": _win_back_active,
    "win_back_lapsed": _win_back_lapsed,
}
LOOKBACK = 60 * DAY  # no case reaches further back than this before its moment


def _earliest_offset(
    name: str, cid: str, rng: random.Random, jitter_ms: int, guests: Any = None
) -> int:
    """How far before its moment case ``name`` puts its first record, built with a copy of
    ``rng`` so that the real build draws exactly the same numbers. Cases are built
    relative to their moment, so the offset does not depend on when the moment is."""
    probe = _Case(cid, random.Random(), jitter_ms)
    probe.rng.setstate(rng.getstate())
    probe.case = name
    probe.guests = None if guests is None else type(guests)()  # its links count too
    moment = START + LOOKBACK
    CASES[name](probe, moment)
    return moment - min(ms for ms, _ in probe.records)


def realistic(
    customers: int,
    seed: int = 7,
    days: int = 30,
    jitter_ms: int = DEFAULT_JITTER,
    blast: bool = False,
    holds: bool = False,
    links: bool = False,
) -> Iterator[tuple[dict[str, Any] | None, Truth | None]]:
    """History records in record-time order, and truths, as they are ready.

    Customer ``i``'s first record is placed at its anchor, ``i / customers`` of the way
    through ``days`` (plus up to an hour), and its case's moment follows from that. Every
    later customer's records are then at or after the current anchor, so the heap only
    holds records still in the future of it: memory is bounded by how many customers
    overlap in time, not by the history's length (a case's moment is up to LOOKBACK after
    its anchor)."""
    rng = random.Random(seed)
    names = sorted(CASES)
    heap: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0
    span = days * DAY
    # whole-campaign cases (streams.offline.blasts) and quiet-hours and cap cases
    # (streams.offline.holds), customers of their own, half way through
    extra: list[Callable[[int], Iterator[tuple[dict[str, Any] | None, Truth | None]]]] = []
    if blast:
        from streams.offline.blasts import blast_cases

        extra.append(blast_cases)
    if holds:
        from streams.offline.holds import hold_cases

        extra.append(hold_cases)
    guests = None
    if links:
        from streams.offline.links import GuestCheckouts, link_cases

        extra.append(link_cases)
        guests = GuestCheckouts()
    for cases in extra:
        for xrec, xtruth in cases(START + max(span // 2, 2 * DAY)):
            if xrec is not None:
                heapq.heappush(heap, (_record_ms(xrec), seq, xrec))
                seq += 1
            if xtruth is not None:
                yield None, xtruth
    for i in range(customers):
        base = START + (span * i) // max(1, customers)
        anchor = base + rng.randint(0, HOUR)
        while heap and heap[0][0] < base:
            yield heapq.heappop(heap)[2], None
        case = _Case(f"r{i:07d}", rng, jitter_ms)
        case.guests = guests
        case.case = names[rng.randrange(len(names))]
        moment = anchor + _earliest_offset(case.case, case.cid, rng, jitter_ms, guests)
        CASES[case.case](case, moment)
        earliest = min(ms for ms, _ in case.records)
        if earliest < base:  # a case whose shape depends on when it happens: a generator bug
            raise RuntimeError(
                f"case {case.case} of {case.cid} starts at {_iso(earliest)}, before its "
                f"anchor {_iso(base)}: records would leave the heap out of time order"
            )
        for record_ms, rec in case.records:
            heapq.heappush(heap, (record_ms, seq, rec))
            seq += 1
        for truth in case.truth:
            yield None, truth
    while heap:
        yield heapq.heappop(heap)[2], None


def _record_ms(rec: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(rec["timestamp"]).timestamp() * 1000)


def write_realistic(
    out: Path,
    truth_out: Path,
    customers: int,
    seed: int = 7,
    days: int = 30,
    jitter_ms: int = DEFAULT_JITTER,
    blast: bool = False,
    holds: bool = False,
    links: bool = False,
) -> tuple[int, int]:
    """Write the history and its truth file; returns (records, candidates)."""
    import gzip

    records = candidates = 0
    opener: Any = gzip.open if str(out).endswith(".gz") else open
    with opener(out, "wb") as fh, open(truth_out, "wb") as th:
        for rec, truth in realistic(customers, seed, days, jitter_ms, blast, holds, links):
            if rec is not None:
                fh.write(orjson.dumps(rec) + b"\n")
                records += 1
            if truth is not None:
                th.write(
                    orjson.dumps(
                        {
                            "message_id": truth.message_id,
                            "customer_id": truth.customer_id,
                            "action": truth.action,
                            "rule": truth.rule,
                            "case": truth.case,
                            "why": truth.why,
                        }
                    )
                    + b"\n"
                )
                candidates += 1
    return records, candidates
