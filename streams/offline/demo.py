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


def demo_history(now_ms: int) -> list[dict[str, Any]]:
    t0 = now_ms - 3 * HOUR
    recs: list[tuple[int, dict[str, Any]]] = []

    def ev(topic: str, t: int, value: dict[str, Any], **extra: Any) -> None:
        field = "created_at" if topic == "outbound" else "occurred_at"
        recs.append((t, {"topic": topic, "value": {**value, field: iso(t)}, **extra}))

    def session(cid: str, t: int, n: int) -> None:
        ev(
            "sessions",
            t,
            {
                "event_id": f"s-{cid}-{n}",
                "customer_id": cid,
                "session_id": f"sess-{cid}-{n}",
                "kind": "started",
            },
        )

    def msg(
        mid: str,
        cid: str,
        t: int,
        trigger: str,
        channel: str = "email",
        context: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        ev(
            "outbound",
            t,
            {
                "message_id": mid,
                "customer_id": cid,
                "trigger": trigger,
                "channel": channel,
                "category": "marketing",
                "context": context or {},
                "payload": {"template": f"{trigger}-1"},
            },
            **extra,
        )

    # Abandoned cart, then the purchase two minutes later (within the 5 min settle).
    session("c-ada", t0, 1)
    msg(
        "m-cart-ada",
        "c-ada",
        t0 + 10 * MIN,
        "abandoned_cart",
        context={"cart_id": "cart-1", "cart_updated_at": iso(t0 + 9 * MIN), "skus": ["SKU-1"]},
    )
    ev(
        "purchases",
        t0 + 12 * MIN,
        {
            "event_id": "p-ada-1",
            "customer_id": "c-ada",
            "order_id": "o-ada-1",
            "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "19.99"}],
            "currency": "EUR",
        },
    )
    # Abandoned cart with no purchase: sent after the settle delay.
    session("c-bob", t0 + 5 * MIN, 1)
    msg(
        "m-cart-bob",
        "c-bob",
        t0 + 20 * MIN,
        "abandoned_cart",
        context={"cart_id": "cart-2", "cart_updated_at": iso(t0 + 18 * MIN), "skus": ["SKU-2"]},
    )
    # "Welcome back!" to a brand-new visitor (one session).
    session("c-new", t0 + 30 * MIN, 1)
    msg("m-wb-new", "c-new", t0 + 31 * MIN, "welcome_back")
    # The same message id twice.
    session("c-dup", t0 + 32 * MIN, 1)
    msg("m-promo-dup", "c-dup", t0 + 33 * MIN, "promotion")
    msg("m-promo-dup", "c-dup", t0 + 34 * MIN, "promotion")
    # A recommendation of a product that was just returned: rewritten.
    ev(
        "purchases",
        t0 + 40 * MIN,
        {
            "event_id": "p-cy-1",
            "customer_id": "c-cy",
            "order_id": "o-cy-1",
            "items": [{"sku": "SKU-9", "quantity": 1}],
            "currency": "EUR",
        },
    )
    ev(
        "returns",
        t0 + 50 * MIN,
        {
            "event_id": "r-cy-1",
            "customer_id": "c-cy",
            "order_id": "o-cy-1",
            "items": [{"sku": "SKU-9", "quantity": 1}],
            "reason": "damaged",
        },
    )
    msg(
        "m-rec-cy",
        "c-cy",
        t0 + 60 * MIN,
        "product_recommendation",
        context={"skus": ["SKU-9", "SKU-5"]},
    )
    # Consent withdrawn, then a promotion on that channel.
    ev(
        "consents",
        t0 + 61 * MIN,
        {"event_id": "k-dee-1", "customer_id": "c-dee", "channel": "email", "status": "withdrawn"},
    )
    msg("m-promo-dee", "c-dee", t0 + 62 * MIN, "promotion")
    # A trigger that sat in automation's queue for 26 hours.
    msg(
        "m-stale-eve", "c-eve", t0 + 63 * MIN, "promotion", timestamp=iso(t0 + 63 * MIN + 26 * HOUR)
    )
    # A malformed record: goes to the dead-letter topic, the worker keeps going.
    recs.append(
        (
            t0 + 64 * MIN,
            {
                "topic": "purchases",
                "value": {
                    "event_id": "p-bad",
                    "customer_id": "c-ada",
                    "occurred_at": iso(t0 + 64 * MIN),
                    "order_id": "o-bad",
                    "items": [{"quantity": 1}],
                },
            },
        )
    )
    # Closing sessions: stream time passes every deadline above.
    for cid in ("c-ada", "c-bob", "c-new", "c-dup", "c-cy", "c-dee", "c-eve"):
        session(cid, t0 + 2 * HOUR, 9)
    recs.sort(key=lambda x: x[0])
    return [r for _t, r in recs]


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
