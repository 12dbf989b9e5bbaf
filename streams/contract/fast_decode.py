"""A record's fields read straight from the value ``strict_json`` parsed, for the records
their model surely accepts.

Through its model a record is parsed a second time (pydantic's own parser) and built
into a model whose fields are then copied into the core's objects. Here the parsed
value is walked once instead, with each model's constraints (``schemas/models.py``)
written out: strict types (a bool is not an int, a float is not an int), lengths and
bounds, enum values, defaults, null only where the field is optional, timestamps with
an offset.

This module only ever *accepts*. Whatever it would refuse, and whatever it is not sure
the model reads the same way, gets None: ``decode`` then validates the record with its
model, which accepts it or names the problem in its own words. A refusal therefore reads
the same whichever path was tried, and a case missing here costs time, never a different
answer. ``tests/unit/contract/test_fast_decode.py`` holds both paths to the same result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from schemas import Category, Channel, ConsentStatus, LinkKind, SessionKind, Trigger
from schemas.models import MAX_ITEMS
from streams.core.clock import to_ms


@dataclass(slots=True)
class Valid:
    """A record its model accepts, in the core's terms: what either path hands to the
    checks that follow validation (ids, time zones, required context, clock skew) and
    to the building of the core's objects, so those exist once."""

    kind: str
    id: str  # event_id; an outbound message's message_id
    customer_id: str
    at: int  # occurred_at; an outbound message's created_at (epoch ms)
    timezone: str | None = None  # a session's; an outbound message's context.timezone
    order_id: str | None = None  # a purchase's, a return's; an outbound context.order_id
    items: tuple[tuple[str, int], ...] = ()  # (sku, quantity) of a purchase, a return
    started: bool = False  # a session that started (not ended)
    channel: str = ""  # a consent's, an outbound message's
    withdrawn: bool = False  # a consent withdrawn (not granted)
    linked_to: str = ""  # identities
    unlink: bool = False
    source: str | None = None
    trigger: str = ""  # outbound
    category: str = ""
    cart_id: str | None = None  # outbound: the rest of its context
    cart_updated_at: int | None = None
    skus: tuple[str, ...] | None = None
    basis: tuple[tuple[str, int], ...] | None = None  # (sku, signal time)
    payload: dict[str, Any] = field(default_factory=dict)
    campaign_id: str | None = None


ID_MAX = 256
SKU_MAX = 128
ZONE_MAX = 64
QUANTITY_MAX = 1_000_000

_TRIGGERS = frozenset(t.value for t in Trigger)
_CHANNELS = frozenset(c.value for c in Channel)
_CATEGORIES = frozenset(c.value for c in Category)
_STATUSES = frozenset(s.value for s in ConsentStatus)
_SESSION_KINDS = frozenset(k.value for k in SessionKind)
_LINK_KINDS = frozenset(k.value for k in LinkKind)

MAX_OPENINGS = 128
"""More ``{`` and ``[`` bytes than this and the record may nest deeper than pydantic's
parser goes (it refuses about 200 levels; orjson reads 1024): left to the model. Each
level takes two bytes, so a record of up to twice as many bytes need not be counted."""

_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
"""RFC 3339 as producers write it, each field in range but the day of the month (the
calendar checks that). pydantic takes more (``t``, ``z``, a space or ``_`` for ``T``,
``+0530``, no seconds, a comma, any number of fraction digits): those go to the model.
Both it and ``datetime.fromisoformat`` keep 6 fraction digits and drop the rest."""

_DECIMAL = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?")
"""The decimal strings surely taken for ``unit_price``. A strict ``Decimal`` read from
JSON takes an integer, a float or a numeric string (including ``1e3``, `` 1``, ``1_000``
and non-ASCII digits, refusing ``NaN``): anything but this plain form is the model's."""

_BIG = float(2**63)
"""orjson reads an integer beyond 64 bits as a float, pydantic as the integer: a float
this large in a payload may have been such an integer (and would hash differently)."""


def read(kind: str, raw: bytes, value: Any) -> Valid | None:
    """The record as its model would accept it, or None to ask the model."""
    if type(value) is not dict:
        return None
    if len(raw) > 2 * MAX_OPENINGS and raw.count(b"{") + raw.count(b"[") > MAX_OPENINGS:
        return None
    return _READERS[kind](value)


def _purchase(d: dict[str, Any]) -> Valid | None:
    event_id, customer_id, order_id = d.get("event_id"), d.get("customer_id"), d.get("order_id")
    if not (_id(event_id) and _id(customer_id) and _id(order_id)):
        return None
    at = _ms(d.get("occurred_at"))
    items = _items(d.get("items", []), 0, priced=True)
    currency = d.get("currency")
    if at is None or items is None or not (currency is None or _text(currency, 0, 8)):
        return None
    return Valid("purchases", event_id, customer_id, at, order_id=order_id, items=items)


def _return(d: dict[str, Any]) -> Valid | None:
    event_id, customer_id, order_id = d.get("event_id"), d.get("customer_id"), d.get("order_id")
    if not (_id(event_id) and _id(customer_id) and _id(order_id)):
        return None
    at = _ms(d.get("occurred_at"))
    items = _items(d.get("items"), 1, priced=False)
    reason = d.get("reason")
    if at is None or items is None or not (reason is None or _text(reason, 0, 1024)):
        return None
    return Valid("returns", event_id, customer_id, at, order_id=order_id, items=items)


def _session(d: dict[str, Any]) -> Valid | None:
    event_id, customer_id = d.get("event_id"), d.get("customer_id")
    if not (_id(event_id) and _id(customer_id) and _id(d.get("session_id"))):
        return None
    at = _ms(d.get("occurred_at"))
    kind = d.get("kind")
    zone = d.get("timezone")
    if at is None or not _one_of(kind, _SESSION_KINDS):
        return None
    if not (zone is None or _text(zone, 1, ZONE_MAX)):
        return None
    return Valid("sessions", event_id, customer_id, at, timezone=zone, started=kind == "started")


def _consent(d: dict[str, Any]) -> Valid | None:
    event_id, customer_id = d.get("event_id"), d.get("customer_id")
    if not (_id(event_id) and _id(customer_id)):
        return None
    at = _ms(d.get("occurred_at"))
    channel, status = d.get("channel"), d.get("status")
    if at is None or not _one_of(channel, _CHANNELS) or not _one_of(status, _STATUSES):
        return None
    return Valid(
        "consents", event_id, customer_id, at, channel=channel, withdrawn=status == "withdrawn"
    )


def _identity(d: dict[str, Any]) -> Valid | None:
    event_id, customer_id, linked_to = d.get("event_id"), d.get("customer_id"), d.get("linked_to")
    if not (_id(event_id) and _id(customer_id) and _id(linked_to)):
        return None
    at = _ms(d.get("occurred_at"))
    kind = d.get("kind", "link")
    source = d.get("source")
    if at is None or not _one_of(kind, _LINK_KINDS):
        return None
    if not (source is None or _text(source, 0, 64)):
        return None
    return Valid(
        "identities", event_id, customer_id, at, linked_to=linked_to, unlink=kind == "unlink",
        source=source,
    )  # fmt: skip


def _outbound(d: dict[str, Any]) -> Valid | None:
    message_id, customer_id = d.get("message_id"), d.get("customer_id")
    if not (_id(message_id) and _id(customer_id)):
        return None
    at = _ms(d.get("created_at"))
    trigger, channel = d.get("trigger"), d.get("channel")
    category = d.get("category", "marketing")
    if at is None or not _one_of(trigger, _TRIGGERS) or not _one_of(channel, _CHANNELS):
        return None
    if not _one_of(category, _CATEGORIES):
        return None
    campaign_id = d.get("campaign_id")
    if not (campaign_id is None or _id(campaign_id)):
        return None
    payload = d.get("payload", _ABSENT)
    if payload is _ABSENT:
        payload = {}
    elif type(payload) is not dict or not _same_numbers(payload):
        return None
    ctx = d.get("context", _ABSENT)
    if ctx is _ABSENT:
        ctx = {}
    elif type(ctx) is not dict:
        return None
    v = Valid("outbound", message_id, customer_id, at, trigger=trigger, channel=channel,
              category=category, payload=payload, campaign_id=campaign_id)  # fmt: skip
    return v if not ctx or _context(ctx, v) else None


_ABSENT: Any = object()


def _context(ctx: dict[str, Any], v: Valid) -> bool:
    """Read ``context`` into ``v``; False when the model is to decide."""
    cart_id, order_id, zone = ctx.get("cart_id"), ctx.get("order_id"), ctx.get("timezone")
    if not (cart_id is None or _id(cart_id)) or not (order_id is None or _id(order_id)):
        return False
    if not (zone is None or _text(zone, 1, ZONE_MAX)):
        return False
    v.cart_id, v.order_id, v.timezone = cart_id, order_id, zone
    updated = ctx.get("cart_updated_at")
    if updated is not None:
        v.cart_updated_at = _ms(updated)
        if v.cart_updated_at is None:
            return False
    skus = ctx.get("skus")
    if skus is not None:
        if type(skus) is not list or len(skus) > MAX_ITEMS:
            return False
        for sku in skus:
            if not _sku(sku):
                return False
        v.skus = tuple(skus)
    basis = ctx.get("basis")
    if basis is not None:
        if type(basis) is not dict or len(basis) > MAX_ITEMS:
            return False
        signals = []
        for sku, when in basis.items():
            t = _ms(when)
            if t is None or not _sku(sku):
                return False
            signals.append((sku, t))
        v.basis = tuple(signals)
    return True


def _items(value: Any, least: int, priced: bool) -> tuple[tuple[str, int], ...] | None:
    """``items`` of a purchase (``priced``: with ``unit_price``) or a return."""
    if type(value) is not list or not least <= len(value) <= MAX_ITEMS:
        return None
    out = []
    for item in value:
        if type(item) is not dict:
            return None
        sku = item.get("sku")
        quantity = item.get("quantity", 1)
        if not _sku(sku) or type(quantity) is not int or not 1 <= quantity <= QUANTITY_MAX:
            return None
        if priced and not _price(item.get("unit_price")):
            return None
        out.append((sku, quantity))
    return tuple(out)


def _id(v: Any) -> TypeGuard[str]:
    return type(v) is str and 0 < len(v) <= ID_MAX


def _sku(v: Any) -> TypeGuard[str]:
    return type(v) is str and 0 < len(v) <= SKU_MAX


def _text(v: Any, least: int, most: int) -> TypeGuard[str]:
    return type(v) is str and least <= len(v) <= most


def _one_of(v: Any, values: frozenset[str]) -> TypeGuard[str]:
    """An enum's value, exactly (a list or an object is not even hashable)."""
    return type(v) is str and v in values


def _price(v: Any) -> bool:
    """A ``unit_price`` the strict ``Decimal | None`` surely takes."""
    t = type(v)
    return v is None or t is int or t is float or (t is str and _DECIMAL.fullmatch(v) is not None)


def _ms(v: Any) -> int | None:
    """Epoch ms of an RFC 3339 timestamp with an offset: the same fields and offset as
    the datetime pydantic builds, through the same ``to_ms``."""
    if type(v) is not str or _TIMESTAMP.fullmatch(v) is None:
        return None
    try:
        return to_ms(datetime.fromisoformat(v))
    except ValueError:  # year 0, 30 February: the model names it
        return None


def _same_numbers(value: Any) -> bool:
    """Does pydantic read every number in ``value`` as orjson did (see ``_BIG``)?"""
    for v in value.values() if type(value) is dict else value:
        t = type(v)
        if t is float:
            if not -_BIG < v < _BIG:
                return False
        elif (t is dict or t is list) and not _same_numbers(v):
            return False
    return True


READS: dict[str, frozenset[str]] = {
    "Purchase": frozenset({"event_id", "customer_id", "occurred_at", "order_id", "items",
                           "currency"}),
    "PurchaseItem": frozenset({"sku", "quantity", "unit_price"}),
    "Return": frozenset({"event_id", "customer_id", "occurred_at", "order_id", "items",
                         "reason"}),
    "ReturnItem": frozenset({"sku", "quantity"}),
    "SessionEvent": frozenset({"event_id", "customer_id", "occurred_at", "session_id", "kind",
                               "timezone"}),
    "ConsentChange": frozenset({"event_id", "customer_id", "occurred_at", "channel", "status"}),
    "IdentityLink": frozenset({"event_id", "customer_id", "occurred_at", "linked_to", "kind",
                               "source"}),
    "OutboundMessage": frozenset({"message_id", "customer_id", "created_at", "trigger",
                                  "channel", "category", "context", "payload", "campaign_id"}),
    "MessageContext": frozenset({"cart_id", "cart_updated_at", "skus", "order_id", "basis",
                                 "timezone"}),
}  # fmt: skip
"""The fields each reader above checks, per model. Extra keys are allowed, so a field
added to a model and not read here would pass unchecked: a test holds these sets equal
to the models' fields, and fails until the reader checks the new one."""

_READERS: dict[str, Callable[[dict[str, Any]], Valid | None]] = {
    "purchases": _purchase,
    "returns": _return,
    "sessions": _session,
    "consents": _consent,
    "identities": _identity,
    "outbound": _outbound,
}
