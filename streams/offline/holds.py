"""Quiet-hours and cap cases for realistic histories (``generate --profile realistic
--holds``): customers across six time zones, night-time SMS and push, a customer who
moves, and customers who hit a cap across channels, each case with its truth.

Every case is a customer of its own whose messages go to SMS or push only, so the
realistic cases (all email) decide as before. The truth holds for
``policies/holds.toml``: quiet hours 21:00-08:00 on sms and push (default zone UTC),
a cap of two messages a day across sms and push, and one SMS an hour (deferred).
Times are placed in each customer's local time, in January (no daylight-saving change
in these zones then).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.core.quiet_hours import zone
from streams.offline.generator import ZONES
from streams.offline.scenarios import PURCHASE_DELAY, Truth, _iso

CASES = (
    "night_sms",
    "night_cart_bought",
    "night_cart_expired",
    "night_transactional",
    "zone_from_context",
    "default_zone",
    "mobile_cap",
    "sms_deferred",
    "moved",
)


def _local(day: datetime, tz_name: str, hhmm: str, days: int = 0) -> int:
    """Epoch ms of local ``hhmm`` on ``day`` (+ ``days``) in the zone."""
    tz = zone(tz_name)
    assert tz is not None
    h, m = (int(x) for x in hhmm.split(":"))
    d = (day + timedelta(days=days)).date()
    return int(datetime(d.year, d.month, d.day, h, m, tzinfo=tz).timestamp() * 1000)


class _Customer:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.n = 0
        self.records: list[dict[str, Any]] = []
        self.truth: list[Truth] = []

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"{kind}-{self.cid}-{self.n}"

    def _add(self, record_ms: int, topic: str, value: dict[str, Any]) -> None:
        self.records.append({"topic": topic, "value": value, "timestamp": _iso(record_ms)})

    def session(self, t: int, tz: str | None) -> None:
        value = {"event_id": self._id("s"), "customer_id": self.cid, "occurred_at": _iso(t),
                 "session_id": self._id("sess"), "kind": "started"}  # fmt: skip
        if tz is not None:
            value["timezone"] = tz
        self._add(t, "sessions", value)

    def purchase(self, t: int, skus: list[str]) -> None:
        self._add(t + PURCHASE_DELAY, "purchases", {
            "event_id": self._id("p"), "customer_id": self.cid, "occurred_at": _iso(t),
            "order_id": self._id("o"), "currency": "EUR",
            "items": [{"sku": s, "quantity": 1, "unit_price": "9.90"} for s in skus]})  # fmt: skip

    def message(
        self, t: int, trigger: str, channel: str, action: str, rule: str | None, why: str,
        context: dict[str, Any] | None = None, category: str = "marketing",
    ) -> None:  # fmt: skip
        mid = self._id("m")
        self._add(t, "outbound", {
            "message_id": mid, "customer_id": self.cid, "created_at": _iso(t),
            "trigger": trigger, "channel": channel, "category": category,
            "context": context or {}, "payload": {"template": f"{trigger}-{mid}"}})  # fmt: skip
        self.truth.append(Truth(mid, self.cid, action, rule, "holds", why))


def _cart(c: _Customer, updated: int) -> dict[str, Any]:
    return {"cart_id": c._id("cart"), "cart_updated_at": _iso(updated), "skus": ["SKU-7"]}


def _build(case: str, c: _Customer, day: datetime, tz: str) -> None:
    at = lambda hhmm, days=0: _local(day, tz, hhmm, days)  # noqa: E731 - local shorthand
    if case == "night_sms":
        c.session(at("18:00"), tz)
        c.message(at("23:30"), "promotion", "sms", "send", None,
                  f"23:30 in {tz} (from its session): held to the morning, then sent")  # fmt: skip
    elif case == "night_cart_bought":
        c.session(at("18:00"), tz)
        c.purchase(at("02:00", 1), ["SKU-7"])
        c.message(at("21:30"), "abandoned_cart", "push", "suppress", "cart_already_purchased",
                  "a push cart mail held for the night; the cart was bought at 02:00 local, "
                  "before its 6 h hold ran out", _cart(c, at("21:20")))  # fmt: skip
    elif case == "night_cart_expired":
        c.session(at("18:00"), tz)
        c.message(at("21:30"), "abandoned_cart", "push", "suppress", "quiet_hours_expired",
                  "a push cart mail at 21:30 local may wait 6 h: 03:30 is still night",
                  _cart(c, at("21:20")))  # fmt: skip
    elif case == "night_transactional":
        c.session(at("18:00"), tz)
        c.message(at("02:00", 1), "promotion", "sms", "send", None,
                  "transactional: quiet hours do not apply", category="transactional")  # fmt: skip
    elif case == "zone_from_context":
        c.message(at("22:15"), "promotion", "sms", "send", None,
                  f"the zone came with the message ({tz}): held to the morning",
                  {"timezone": tz})  # fmt: skip
    elif case == "default_zone":
        utc = int(day.replace(hour=23, minute=10).timestamp() * 1000)
        c.message(utc, "promotion", "push", "send", None,
                  "no zone known: the default (UTC) says 23:10 is night; held")  # fmt: skip
    elif case == "mobile_cap":
        c.session(at("09:00"), tz)
        c.message(at("10:00"), "promotion", "sms", "send", None, "the first of the day")
        c.message(at("11:00"), "promotion", "push", "send", None, "the second, on push")
        c.message(at("12:00"), "promotion", "sms", "suppress", "cap_exceeded",
                  "a third on sms or push within 24 h: the mobile cap (2) has no room; each "
                  "channel alone is under its frequency cap")  # fmt: skip
    elif case == "sms_deferred":
        c.session(at("09:00"), tz)
        c.message(at("10:00"), "promotion", "sms", "send", None, "the hour's SMS")
        c.message(at("10:30"), "promotion", "sms", "send", None,
                  "a second SMS within the hour: deferred by the sms-hourly cap to 11:00, "
                  "then sent (the mobile cap still has room)")  # fmt: skip
    else:  # moved: lived in Tokyo, now in New York
        c.session(_local(day, "Asia/Tokyo", "10:00"), "Asia/Tokyo")
        c.session(_local(day, "America/New_York", "10:00"), "America/New_York")
        why = "22:30 in New York, where the latest session was (noon in Tokyo): held"
        c.message(_local(day, "America/New_York", "22:30"), "promotion", "sms", "send", None,
                  why)  # fmt: skip


def hold_cases(
    at: int, customers: int = 400
) -> Iterator[tuple[dict[str, Any] | None, Truth | None]]:
    """``customers`` customers from the UTC day after ``at``, cycling through the cases and
    the zones: their records (in no particular order) and their truths."""
    midnight = datetime.fromtimestamp(at / 1000, tz=UTC).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)  # fmt: skip
    day = midnight + timedelta(days=1)
    for i in range(customers):
        c = _Customer(f"h{i:05d}")
        case = CASES[i % len(CASES)]
        tz = ZONES[(i // len(CASES)) % len(ZONES)]
        _build(case, c, day + timedelta(days=(i // 48) % 5), tz)
        for rec in c.records:
            yield rec, None
        for truth in c.truth:
            yield None, truth


__all__ = ["hold_cases"]
