"""The one registry of topics: role, default name, key, value model, direction.

The worker, the CLI, the replay tools and the tests all import this, so a
topic's name or schema is defined in exactly one place. Names can be
overridden by settings (``TRIGGER_SANITY_TOPIC_<ROLE>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from schemas import (
    ConsentChange,
    DeadLetter,
    IdentityLink,
    LateEvidence,
    OutboundMessage,
    Purchase,
    Release,
    Return,
    SessionEvent,
    SuppressedMessage,
)
from streams.core.campaign_history import CampaignRecord
from streams.core.policy_history import PolicyRecord


@dataclass(frozen=True, slots=True)
class TopicSpec:
    role: str
    default_name: str
    direction: Literal["in", "out", "control"]
    value_model: type[BaseModel]
    key: str = "customer_id (UTF-8)"


REGISTRY: tuple[TopicSpec, ...] = (
    TopicSpec("purchases", "purchases", "in", Purchase),
    TopicSpec("returns", "returns", "in", Return),
    TopicSpec("sessions", "sessions", "in", SessionEvent),
    TopicSpec("consents", "consents", "in", ConsentChange),
    TopicSpec("outbound", "outbound", "in", OutboundMessage),
    # identity links, keyed by the alias (see streams.core.identity)
    TopicSpec("identities", "identities", "in", IdentityLink, key="the alias (customer_id)"),
    TopicSpec("send_queue", "send-queue", "out", OutboundMessage),
    TopicSpec("suppressed", "suppressed", "out", SuppressedMessage),
    TopicSpec("dead_letter", "dead-letter", "out", DeadLetter, key="source key, as received"),
    TopicSpec("late_evidence", "late-evidence", "out", LateEvidence),
    TopicSpec("releases", "releases", "out", Release),
    # policy versions applied live: compacted, one partition, keyed by sequence number
    TopicSpec("policy", "policy", "control", PolicyRecord, key="sequence number, zero-padded"),
    # ops commands on campaigns (release, kill, resume): compacted, one partition
    TopicSpec(
        "campaigns", "campaigns", "control", CampaignRecord, key="sequence number, zero-padded"
    ),
)

BY_ROLE = {t.role: t for t in REGISTRY}
INPUT_ROLES = tuple(t.role for t in REGISTRY if t.direction == "in")
OUTPUT_ROLES = tuple(t.role for t in REGISTRY if t.direction == "out")
CONTROL_ROLES = tuple(t.role for t in REGISTRY if t.direction == "control")


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Role -> actual topic name, as configured."""

    names: dict[str, str]

    def __getitem__(self, role: str) -> str:
        return self.names[role]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.names[r] for r in INPUT_ROLES)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.names[r] for r in OUTPUT_ROLES)

    @property
    def control(self) -> tuple[str, ...]:
        return tuple(self.names[r] for r in CONTROL_ROLES)

    @property
    def all(self) -> tuple[str, ...]:
        return self.inputs + self.outputs + self.control

    def role_of(self) -> dict[str, str]:
        return {name: role for role, name in self.names.items()}

    @classmethod
    def defaults(cls) -> TopicNames:
        return cls({t.role: t.default_name for t in REGISTRY})

    @classmethod
    def prefixed(cls, prefix: str) -> TopicNames:
        """Fresh names per test run: ``<prefix>purchases`` and so on."""
        return cls({t.role: f"{prefix}{t.default_name}" for t in REGISTRY})
