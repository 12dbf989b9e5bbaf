"""The contract (docs/contract.md) as pydantic v2 models.

Inputs are strict on required fields, types and enums (a wrong type is a
dead-letter, not a silent coercion) and keep unknown extra fields, because
producers add fields before we know about them and the send queue must pass
them through untouched.
"""

from schemas.models import (
    INPUT_MODELS,
    OUTPUT_MODELS,
    Category,
    Channel,
    ConsentChange,
    ConsentStatus,
    DeadLetter,
    Evidence,
    HistoryLine,
    IdentityLink,
    LateEvidence,
    LinkKind,
    OfflineDecision,
    OutboundMessage,
    Purchase,
    PurchaseItem,
    Release,
    Return,
    ReturnItem,
    Sanity,
    SessionEvent,
    SessionKind,
    SuppressedMessage,
    Trigger,
)

__all__ = [
    "INPUT_MODELS",
    "OUTPUT_MODELS",
    "Category",
    "Channel",
    "ConsentChange",
    "ConsentStatus",
    "DeadLetter",
    "Evidence",
    "HistoryLine",
    "IdentityLink",
    "LateEvidence",
    "LinkKind",
    "OfflineDecision",
    "OutboundMessage",
    "Purchase",
    "PurchaseItem",
    "Release",
    "Return",
    "ReturnItem",
    "Sanity",
    "SessionEvent",
    "SessionKind",
    "SuppressedMessage",
    "Trigger",
]
