"""Bytes from an input topic -> the core's record, or the reason it is unreadable.

Bad input is data, not an exception: ``decode`` returns ``Unreadable`` for a
record that cannot be used (not JSON every reader takes alike, see
``strict_json``; wrong types, missing or unknown enum values, ids with control
characters, oversized, no value) and the caller routes it to the dead-letter
topic. The worker and the offline replay both read through here.

A record is read from the one parse ``strict_json`` made when ``fast_decode`` is sure
its model accepts it; any other goes through its model, which accepts it or says why
not. Either way it ends as a ``Valid``, and one copy of what follows validation (ids,
zones, required context, clock skew, the core's objects) serves both paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from schemas import (
    ConsentChange,
    ConsentStatus,
    IdentityLink,
    LinkKind,
    OutboundMessage,
    Purchase,
    Return,
    SessionEvent,
    SessionKind,
)
from streams.contract import fast_decode, strict_json
from streams.contract.fast_decode import Valid
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
    return _decode(kind, raw, record_ms, received_wall, policy, max_bytes, fast=True)


def decode_with_models(
    kind: str,
    raw: bytes | None,
    record_ms: int,
    received_wall: int,
    policy: Policy,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Parsed | Unreadable:
    """``decode`` with every record validated by its model: the reference the fast path
    (``fast_decode``) is held to."""
    return _decode(kind, raw, record_ms, received_wall, policy, max_bytes, fast=False)


def _decode(
    kind: str,
    raw: bytes | None,
    record_ms: int,
    received_wall: int,
    policy: Policy,
    max_bytes: int,
    fast: bool,
) -> Parsed | Unreadable:
    if raw is None:
        return Unreadable("record has no value (null)")
    if len(raw) > max_bytes:
        return Unreadable(f"record is {len(raw)} bytes, over the limit of {max_bytes}")
    value, wrong = strict_json.parse(raw)
    if wrong is not None:
        return Unreadable(wrong)
    valid = fast_decode.read(kind, raw, value) if fast else None
    if valid is None:
        try:
            rec = MODELS[kind].model_validate_json(raw)
        except ValidationError as exc:
            return Unreadable(describe(exc))
        valid = _valid(kind, rec)
    return _parsed(valid, raw, record_ms, received_wall, policy)


def _valid(kind: str, rec: BaseModel) -> Valid:
    """The model's fields in the core's terms, as ``fast_decode`` reads them."""
    if isinstance(rec, Purchase | Return):
        items = tuple((i.sku, i.quantity) for i in rec.items)
        return Valid(kind, rec.event_id, rec.customer_id, to_ms(rec.occurred_at),
                     order_id=rec.order_id, items=items)  # fmt: skip
    if isinstance(rec, SessionEvent):
        return Valid(kind, rec.event_id, rec.customer_id, to_ms(rec.occurred_at),
                     timezone=rec.timezone, started=rec.kind == SessionKind.STARTED)  # fmt: skip
    if isinstance(rec, ConsentChange):
        return Valid(kind, rec.event_id, rec.customer_id, to_ms(rec.occurred_at),
                     channel=rec.channel.value,
                     withdrawn=rec.status == ConsentStatus.WITHDRAWN)  # fmt: skip
    if isinstance(rec, IdentityLink):
        return Valid(kind, rec.event_id, rec.customer_id, to_ms(rec.occurred_at),
                     linked_to=rec.linked_to, unlink=rec.kind == LinkKind.UNLINK,
                     source=rec.source)  # fmt: skip
    assert isinstance(rec, OutboundMessage)
    ctx = rec.context
    return Valid(
        kind,
        rec.message_id,
        rec.customer_id,
        to_ms(rec.created_at),
        timezone=ctx.timezone,
        order_id=ctx.order_id,
        channel=rec.channel.value,
        trigger=rec.trigger.value,
        category=rec.category.value,
        cart_id=ctx.cart_id,
        cart_updated_at=None if ctx.cart_updated_at is None else to_ms(ctx.cart_updated_at),
        skus=None if ctx.skus is None else tuple(ctx.skus),
        basis=None if ctx.basis is None else tuple((sku, to_ms(t)) for sku, t in ctx.basis.items()),
        payload=rec.payload,
        campaign_id=rec.campaign_id,
    )


def _parsed(
    v: Valid, raw: bytes, record_ms: int, received_wall: int, policy: Policy
) -> Parsed | Unreadable:
    """What the models cannot say: ids fit for logs, a known time zone, the context a
    trigger needs, a producer clock that is not ahead; then the core's object."""
    kind = v.kind
    # in the order of _ID_FIELDS: v.id is the message_id of an outbound message, and only
    # an identity link has a third (linked_to)
    for field, value in zip(_ID_FIELDS[kind], (v.id, v.customer_id, v.linked_to), strict=False):
        bad = strict_json.control_in(field, value)
        if bad is not None:
            return Unreadable(bad)
    if v.timezone is not None and not known_zone(v.timezone):
        where = "context.timezone" if kind == "outbound" else "timezone"
        return Unreadable(f"{where}: unknown IANA time zone {v.timezone!r} (e.g. Europe/Berlin)")
    parsed: Parsed | Unreadable
    if kind == "outbound":
        parsed = _candidate(v, raw, record_ms, received_wall, policy)
    elif kind == "identities":
        link = Link(v.id, v.customer_id, v.linked_to, v.at, v.unlink, v.source,
                    raw=raw.decode("utf-8"))  # fmt: skip
        parsed = Parsed(kind, v.customer_id, v.at, link)
    else:
        parsed = Parsed(kind, v.customer_id, v.at, _fact(v))
    if isinstance(parsed, Parsed):
        skew = parsed.event_ms - record_ms
        if skew > policy.time.max_clock_skew:
            # One broken clock must not move a partition's stream time years ahead.
            field = "created_at" if kind == "outbound" else "occurred_at"
            return Unreadable(
                f"{field} {_utc(parsed.event_ms)} is {human_span(skew)} after the record's "
                f"timestamp {_utc(record_ms)} (max_clock_skew "
                f"{human_span(policy.time.max_clock_skew)}): the producer's clock is wrong"
            )
    return parsed


def _utc(ms: int) -> str:
    """``iso``, or the epoch ms of a time ``iso`` cannot write: a model accepts
    ``9999-12-31T23:59:59-01:00``, in year 10000 in UTC, and naming it must not raise."""
    try:
        return iso(ms)
    except ValueError:
        return f"{ms} ms after 1970-01-01T00:00:00Z"


def _fact(v: Valid) -> PurchaseFact | ReturnFact | SessionFact | ConsentFact | None:
    if v.kind in ("purchases", "returns"):
        assert v.order_id is not None  # required by both models
        fact = PurchaseFact if v.kind == "purchases" else ReturnFact
        return fact(v.id, v.at, v.order_id, v.items)
    if v.kind == "sessions":
        return SessionFact(v.id, v.at, tz=v.timezone) if v.started else None
    return ConsentFact(v.id, v.at, v.channel, v.withdrawn)


def _candidate(
    v: Valid, raw: bytes, record_ms: int, received_wall: int, policy: Policy
) -> Parsed | Unreadable:
    missing = [f for f in REQUIRED_CONTEXT.get(v.trigger, ()) if getattr(v, f) is None]
    if missing:
        return Unreadable(
            "; ".join(f"context.{f}: required for trigger {v.trigger}" for f in missing)
        )
    cand = Candidate(
        message_id=v.id,
        customer_id=v.customer_id,
        created_at=v.at,
        trigger=v.trigger,
        channel=v.channel,
        category=v.category,
        cart_updated_at=v.cart_updated_at,
        order_id=v.order_id,
        skus=v.skus,
        payload_hash=payload_hash(v.payload),
        record_time=record_ms,
        deadline=v.at + policy.settle.for_trigger(v.trigger),
        received_wall=received_wall,
        seq=0,
        raw=raw.decode("utf-8"),
        arr=NEVER,
        campaign=campaign_of(v.trigger, v.payload, v.campaign_id),
        basis=v.basis,
        zone=v.timezone,
    )
    return Parsed("outbound", v.customer_id, v.at, cand)
