"""Pydantic models of every record in the contract (docs/contract.md).

Bounds (string lengths, list sizes) exist so that a hostile or broken
producer cannot blow up per-customer state: an oversized value is a
dead-letter with a clear error instead of a slow worker.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=256)]
Sku = Annotated[str, Field(min_length=1, max_length=128)]
Timestamp = AwareDatetime  # RFC 3339 with an offset; naive times are rejected

MAX_ITEMS = 500


class Trigger(StrEnum):
    ABANDONED_CART = "abandoned_cart"
    WELCOME = "welcome"
    WELCOME_BACK = "welcome_back"
    PRODUCT_RECOMMENDATION = "product_recommendation"
    REVIEW_REQUEST = "review_request"
    WIN_BACK = "win_back"
    REPLENISHMENT = "replenishment"
    PROMOTION = "promotion"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class Category(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class SessionKind(StrEnum):
    STARTED = "started"
    ENDED = "ended"


class _Input(BaseModel):
    """Strict about what we read, generous about what we do not know yet."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class _Output(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# ---------------------------------------------------------------- inputs


class PurchaseItem(_Input):
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    unit_price: Decimal | None = None


class Purchase(_Input):
    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    order_id: Id
    items: Annotated[list[PurchaseItem], Field(max_length=MAX_ITEMS)] = []
    currency: Annotated[str, Field(max_length=8)] | None = None


class ReturnItem(_Input):
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1


class Return(_Input):
    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    order_id: Id
    items: Annotated[list[ReturnItem], Field(min_length=1, max_length=MAX_ITEMS)]
    reason: Annotated[str, Field(max_length=1024)] | None = None


class SessionEvent(_Input):
    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    session_id: Id
    kind: SessionKind
    # the customer's IANA time zone as the session saw it (quiet hours)
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ConsentChange(_Input):
    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    channel: Channel
    status: ConsentStatus


class LinkKind(StrEnum):
    LINK = "link"
    UNLINK = "unlink"


class IdentityLink(_Input):
    """One id of a person (a guest checkout, a second device) linked to another from
    ``occurred_at`` on, or that link ended (``unlink``). Keyed by ``customer_id``, the
    alias; ``source`` says where the link was learnt (``checkout``, ``login``)."""

    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    linked_to: Id
    kind: LinkKind = LinkKind.LINK
    source: Annotated[str, Field(max_length=64)] | None = None


class MessageContext(_Input):
    """Trigger-specific context; which fields a trigger needs is checked in the core."""

    cart_id: Id | None = None
    cart_updated_at: Timestamp | None = None
    skus: Annotated[list[Sku], Field(max_length=MAX_ITEMS)] | None = None
    order_id: Id | None = None
    # product_recommendation: per recommended SKU, when the signal it was chosen from
    # happened (recommends_from_stale_signal)
    basis: Annotated[dict[Sku, Timestamp], Field(max_length=MAX_ITEMS)] | None = None
    # the customer's IANA time zone, when automation knows it (quiet hours)
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class OutboundMessage(_Input):
    message_id: Id
    customer_id: Id
    created_at: Timestamp
    trigger: Trigger
    channel: Channel
    category: Category = Category.MARKETING
    context: MessageContext = MessageContext()
    payload: dict[str, Any] = {}
    # the campaign it belongs to; without it, trigger[:payload.template] (campaigns)
    campaign_id: Id | None = None


# ---------------------------------------------------------------- outputs


class Evidence(_Output):
    topic: str
    event_id: str
    occurred_at: str


class HeldZone(_Output):
    zone: str  # IANA name
    source: Literal["context", "session", "default"]
    tzdata: str  # the time zone database version


class Sanity(_Output):
    action: Literal["send", "rewrite"]
    decided_at: str
    policy: str
    removed_skus: list[str] = []
    held_ms: int = 0
    rule: str | None = None  # rewrite: the rule that removed the first SKU
    reason: str | None = None  # rewrite: why each SKU was removed
    evidence: list[Evidence] = []  # rewrite: the events behind it
    monitored: list[str] = []  # rules in monitor mode that would have fired
    send_at: str | None = None  # when it may go: its deadline, or the end of its hold
    held_for: str | None = None  # "quiet_hours" when held for them
    timezone: HeldZone | None = None  # quiet hours: the zone the window was read in


class SuppressedMessage(_Output):
    message: dict[str, Any]
    rule: str
    reason: str
    evidence: list[Evidence]
    decided_at: str
    policy: str
    monitored: list[str] = []
    held_for: str | None = None  # "quiet_hours" when held for them
    timezone: HeldZone | None = None  # quiet hours: the zone the window was read in


class DeadLetter(_Output):
    topic: str
    partition: int | None
    offset: int | None
    key: str | None
    value: str
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    value_null: bool = False
    value_truncated: bool = False
    value_size: int | None = None
    error: str
    received_at: str


class LateEvidence(_Output):
    """An event that would have changed a decision already made: what got through."""

    message_id: str
    customer_id: str
    trigger: str
    rule: str
    reason: str
    event: Evidence
    deadline: str
    decided: Literal["send", "rewrite", "suppress"]  # what was decided
    would_have: Literal["send", "rewrite", "suppress"]  # had the event been read in time
    late_by_ms: int  # event record time minus deadline: a longer settle delay would have caught it
    behind_ms: int  # how far behind its topic's frontier it was read: the allowed lateness needed
    policy: str


class Release(_Output):
    """Audit record of an ops override that released a suppressed message."""

    message_id: str
    customer_id: str
    rule: str
    released_by: str
    released_at: str
    note: str | None = None


class OfflineDecision(_Output):
    message_id: str
    customer_id: str
    action: Literal["send", "rewrite", "suppress"]
    rule: str | None
    removed_skus: list[str]
    send_at: str | None = None  # when it may go: its deadline, or the end of its hold
    held_for: str | None = None  # "quiet_hours" when held for them


class HistoryLine(BaseModel):
    """One line of a history file: a record as it was (or will be) in a topic."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    value: Any
    key: str | None = None
    timestamp: Timestamp | None = None


INPUT_MODELS: dict[str, type[BaseModel]] = {
    "Purchase": Purchase,
    "Return": Return,
    "SessionEvent": SessionEvent,
    "ConsentChange": ConsentChange,
    "OutboundMessage": OutboundMessage,
    "IdentityLink": IdentityLink,
}

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "SuppressedMessage": SuppressedMessage,
    "DeadLetter": DeadLetter,
    "LateEvidence": LateEvidence,
    "Release": Release,
    "OfflineDecision": OfflineDecision,
    "HistoryLine": HistoryLine,
    "Sanity": Sanity,
}
