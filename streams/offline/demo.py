"""The built-in demo history: one small story per rule, placed relative to now.

Times are relative so that record times are realistic (nothing is stale by
accident, nothing falls out of a broker's time retention). Every customer
ends with a later session so live stream time passes every deadline.
"""

from __future__ import annotations

from typing import Any

from streams.core.clock import iso

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


class _Story:
    """Records of the demo, each at its event time."""

    def __init__(self) -> None:
        self.recs: list[tuple[int, dict[str, Any]]] = []

    def ev(self, topic: str, t: int, value: dict[str, Any], **extra: Any) -> None:
        field = "created_at" if topic == "outbound" else "occurred_at"
        self.recs.append((t, {"topic": topic, "value": {**value, field: iso(t)}, **extra}))

    def session(self, cid: str, t: int, n: int) -> None:
        value = {"event_id": f"s-{cid}-{n}", "customer_id": cid, "session_id": f"sess-{cid}-{n}",
                 "kind": "started"}  # fmt: skip
        self.ev("sessions", t, value)

    def purchase(self, cid: str, t: int, n: int, sku: str, **extra: Any) -> None:
        value = {"event_id": f"p-{cid[2:]}-{n}", "customer_id": cid, "order_id": f"o-{cid[2:]}-{n}",
                 "items": [{"sku": sku, "quantity": 1, **extra}], "currency": "EUR"}  # fmt: skip
        self.ev("purchases", t, value)

    def msg(
        self,
        mid: str,
        cid: str,
        t: int,
        trigger: str,
        context: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        value = {"message_id": mid, "customer_id": cid, "trigger": trigger, "channel": "email",
                 "category": "marketing", "context": context or {},
                 "payload": {"template": f"{trigger}-1"}}  # fmt: skip
        self.ev("outbound", t, value, **extra)


def demo_history(now_ms: int) -> list[dict[str, Any]]:
    t0 = now_ms - 3 * HOUR
    story = _Story()
    _carts(story, t0)
    _greetings_and_duplicates(story, t0)
    _returned_recommendation(story, t0)
    _consent_stale_and_malformed(story, t0)
    # Closing sessions: stream time passes every deadline above.
    for cid in ("c-ada", "c-bob", "c-new", "c-dup", "c-cy", "c-dee", "c-eve"):
        story.session(cid, t0 + 2 * HOUR, 9)
    story.recs.sort(key=lambda x: x[0])
    return [r for _t, r in story.recs]


def _carts(story: _Story, t0: int) -> None:
    # Abandoned cart, then the purchase two minutes later (within the 5 min settle).
    story.session("c-ada", t0, 1)
    ctx = {"cart_id": "cart-1", "cart_updated_at": iso(t0 + 9 * MIN), "skus": ["SKU-1"]}
    story.msg("m-cart-ada", "c-ada", t0 + 10 * MIN, "abandoned_cart", context=ctx)
    story.purchase("c-ada", t0 + 12 * MIN, 1, "SKU-1", unit_price="19.99")
    # Abandoned cart with no purchase: sent after the settle delay.
    story.session("c-bob", t0 + 5 * MIN, 1)
    ctx = {"cart_id": "cart-2", "cart_updated_at": iso(t0 + 18 * MIN), "skus": ["SKU-2"]}
    story.msg("m-cart-bob", "c-bob", t0 + 20 * MIN, "abandoned_cart", context=ctx)


def _greetings_and_duplicates(story: _Story, t0: int) -> None:
    # "Welcome back!" to a brand-new visitor (one session).
    story.session("c-new", t0 + 30 * MIN, 1)
    story.msg("m-wb-new", "c-new", t0 + 31 * MIN, "welcome_back")
    # The same message id twice.
    story.session("c-dup", t0 + 32 * MIN, 1)
    story.msg("m-promo-dup", "c-dup", t0 + 33 * MIN, "promotion")
    story.msg("m-promo-dup", "c-dup", t0 + 34 * MIN, "promotion")


def _returned_recommendation(story: _Story, t0: int) -> None:
    # A recommendation of a product that was just returned: rewritten.
    story.purchase("c-cy", t0 + 40 * MIN, 1, "SKU-9")
    ret = {"event_id": "r-cy-1", "customer_id": "c-cy", "order_id": "o-cy-1",
           "items": [{"sku": "SKU-9", "quantity": 1}], "reason": "damaged"}  # fmt: skip
    story.ev("returns", t0 + 50 * MIN, ret)
    ctx = {"skus": ["SKU-9", "SKU-5"]}
    story.msg("m-rec-cy", "c-cy", t0 + 60 * MIN, "product_recommendation", context=ctx)


def _consent_stale_and_malformed(story: _Story, t0: int) -> None:
    # Consent withdrawn, then a promotion on that channel.
    consent = {"event_id": "k-dee-1", "customer_id": "c-dee", "channel": "email",
               "status": "withdrawn"}  # fmt: skip
    story.ev("consents", t0 + 61 * MIN, consent)
    story.msg("m-promo-dee", "c-dee", t0 + 62 * MIN, "promotion")
    # A trigger that sat in automation's queue for 26 hours.
    late = iso(t0 + 63 * MIN + 26 * HOUR)
    story.msg("m-stale-eve", "c-eve", t0 + 63 * MIN, "promotion", timestamp=late)
    # A malformed record: goes to the dead-letter topic, the worker keeps going.
    bad = {"event_id": "p-bad", "customer_id": "c-ada", "occurred_at": iso(t0 + 64 * MIN),
           "order_id": "o-bad", "items": [{"quantity": 1}]}  # fmt: skip
    story.recs.append((t0 + 64 * MIN, {"topic": "purchases", "value": bad}))


def expected_outputs(history: list[dict[str, Any]]) -> tuple[int, int]:
    """(candidates to decide, records to dead-letter) in a demo history."""
    from pydantic import ValidationError

    from streams.contract.decode import MODELS

    candidates = dead = 0
    for rec in history:
        try:
            MODELS[rec["topic"]].model_validate(rec["value"], strict=False)
        except ValidationError:
            dead += 1
            continue
        candidates += rec["topic"] == "outbound"
    return candidates, dead
