"""Bytes from an input topic -> the core's record, or the reason it is unreadable.

Bad input is data, not an exception: ``decode`` returns ``Unreadable`` for a
record that cannot be used (not JSON every reader takes alike, see
``strict_json``; wrong types, missing or unknown enum values, ids with control
characters, oversized, no value) and the caller routes it to the dead-letter
topic. The worker and the offline replay both read through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas import (
    ConsentChange,
    IdentityLink,
    LinkKind,
    OutboundMessage,
    Purchase,
    Return,
    SessionEvent,
)
from streams.contract import strict_json
from streams.core.candidate import Candidate, campaign_of, payload_hash
from streams.core.clock import NEVER, human_span, iso, to_ms
from streams.core.identity import Link
from streams.core.policy import Policy
from streams.core.quiet_hours import known_zone
from streams.core.state import ConsentFact, PurchaseFact, ReturnFact, SessionFact
from streams.core.vocabulary import REQUIRED_CONTEXT

MODELS: dict[str, type[BaseModel]] = {
    "purchases": Purchase,
    "returns": Return,
    "sessions": SessionEvent,
    "consents": ConsentChange,
    "outbound": OutboundMessage,
    "identities": IdentityLink,
}

DEFAULT_MAX_RECORD_BYTES = 256 * 1024

_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "outbound": ("message_id", "customer_id"),
    **{kind: ("event_id", "customer_id") for kind in ("purchases", "returns", "sessions",
                                                       "consents")},
    "identities": ("event_id", "customer_id", "linked_to"),
}  # fmt: skip
"""The ids that must hold no control character (they reach logs and tables)."""


@dataclass(slots=True)
class Parsed:
    kind: str
    customer_id: str
    event_ms: int
    fact: PurchaseFact | ReturnFact | SessionFact | ConsentFact | Candidate | Link | None


@dataclass(slots=True)
class Unreadable:
    error: str


def describe(exc: ValidationError, limit: int = 5) -> str:
    """``items.0.sku: Field required; channel: Input should be 'email', ...``."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more errors)")
    return "; ".join(parts)


def decode(
    kind: str,
    raw: bytes | None,
    record_ms: int,
    received_wall: int,
    policy: Policy,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Parsed | Unreadable:
    if raw is None:
        return Unreadable("record has no value (null)")
    if len(raw) > max_bytes:
        return Unreadable(f"record is {len(raw)} bytes, over the limit of {max_bytes}")
    wrong = strict_json.problem(raw)
    if wrong is not None:
        return Unreadable(wrong)
    try:
        rec = MODELS[kind].model_validate_json(raw)
    except ValidationError as exc:
        return Unreadable(describe(exc))
    for field in _ID_FIELDS[kind]:
        bad = strict_json.control_in(field, getattr(rec, field))
        if bad is not None:
            return Unreadable(bad)
    # a missing attribute of a model costs an exception: ask only the models that have it
    if isinstance(rec, OutboundMessage):
        zone = rec.context.timezone
    elif isinstance(rec, SessionEvent):
        zone = rec.timezone
    else:
        zone = None
    if zone is not None and not known_zone(zone):
        where = "context.timezone" if kind == "outbound" else "timezone"
        return Unreadable(f"{where}: unknown IANA time zone {zone!r} (e.g. Europe/Berlin)")
    parsed: Parsed | Unreadable
    if isinstance(rec, OutboundMessage):
        parsed = _candidate(rec, raw, record_ms, received_wall, policy)
    elif isinstance(rec, IdentityLink):
        parsed = _link(rec, raw)
    else:
        parsed = _fact(kind, rec)
    if isinstance(parsed, Parsed):
        skew = parsed.event_ms - record_ms
        if skew > policy.time.max_clock_skew:
            # One broken clock must not move a partition's stream time years ahead.
            field = "created_at" if kind == "outbound" else "occurred_at"
            return Unreadable(
                f"{field} {iso(parsed.event_ms)} is {human_span(skew)} after the record's "
                f"timestamp {iso(record_ms)} (max_clock_skew "
                f"{human_span(policy.time.max_clock_skew)}): the producer's clock is wrong"
            )
    return parsed


def _fact(kind: str, rec: Any) -> Parsed:
    t = to_ms(rec.occurred_at)
    fact: PurchaseFact | ReturnFact | SessionFact | ConsentFact | None
    if isinstance(rec, Purchase):
        fact = PurchaseFact(
            rec.event_id, t, rec.order_id, tuple((i.sku, i.quantity) for i in rec.items)
        )
    elif isinstance(rec, Return):
        fact = ReturnFact(
            rec.event_id, t, rec.order_id, tuple((i.sku, i.quantity) for i in rec.items)
        )
    elif isinstance(rec, SessionEvent):
        fact = SessionFact(rec.event_id, t, tz=rec.timezone) if rec.kind == "started" else None
    else:
        fact = ConsentFact(rec.event_id, t, rec.channel.value, rec.status == "withdrawn")
    return Parsed(kind, rec.customer_id, t, fact)


def _link(rec: IdentityLink, raw: bytes) -> Parsed:
    t = to_ms(rec.occurred_at)
    link = Link(rec.event_id, rec.customer_id, rec.linked_to, t, rec.kind == LinkKind.UNLINK,
                rec.source, raw=raw.decode("utf-8"))  # fmt: skip
    return Parsed("identities", rec.customer_id, t, link)


def _candidate(
    rec: OutboundMessage, raw: bytes, record_ms: int, received_wall: int, policy: Policy
) -> Parsed | Unreadable:
    ctx = rec.context
    missing = [f for f in REQUIRED_CONTEXT.get(rec.trigger.value, ()) if getattr(ctx, f) is None]
    if missing:
        return Unreadable(
            "; ".join(f"context.{f}: required for trigger {rec.trigger.value}" for f in missing)
        )
    created = to_ms(rec.created_at)
    trigger = rec.trigger.value
    cand = Candidate(
        message_id=rec.message_id,
        customer_id=rec.customer_id,
        created_at=created,
        trigger=trigger,
        channel=rec.channel.value,
        category=rec.category.value,
        cart_updated_at=None if ctx.cart_updated_at is None else to_ms(ctx.cart_updated_at),
        order_id=ctx.order_id,
        skus=None if ctx.skus is None else tuple(ctx.skus),
        payload_hash=payload_hash(rec.payload),
        record_time=record_ms,
        deadline=created + policy.settle.for_trigger(trigger),
        received_wall=received_wall,
        seq=0,
        raw=raw.decode("utf-8"),
        arr=NEVER,
        campaign=campaign_of(trigger, rec.payload, rec.campaign_id),
        basis=None if ctx.basis is None else tuple((sku, to_ms(t)) for sku, t in ctx.basis.items()),
        zone=ctx.timezone,
    )
    return Parsed("outbound", rec.customer_id, created, cand)
