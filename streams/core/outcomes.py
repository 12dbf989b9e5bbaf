"""What the engine hands out: a decision, a late finding, or a candidate it could not
decide. Plain slotted classes; rendering them into records is the contract layer's
business (``streams.contract.render``)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.core import rules
from streams.core.candidate import Candidate
from streams.core.identity import Link
from streams.core.state import SentFact

Rendered = tuple[tuple[str, bytes, bytes], ...]
"""An output as the records to write: (output role, key, value)."""


@dataclass(slots=True)
class Decided:
    candidate: Candidate
    decision: rules.Decision
    decided_wall: int
    policy: str  # the version that decided it
    rendered: Rendered = ()  # the records, as kept in the outbox (worker only)


@dataclass(slots=True)
class LateFinding:
    """An event that would have changed a decision already made, had it been read in time."""

    sent: SentFact  # the decided message (sent, or suppressed)
    customer_id: str
    rule: str
    reason: str
    event: rules.Evidence
    late_by_ms: int  # record time of the event minus the message's deadline
    behind_ms: int  # its topic's frontier minus its event time, when it was read
    would: str  # what the decision would have been: suppress | rewrite | send
    policy: str  # the version the message was decided by
    rendered: Rendered = ()


@dataclass(slots=True)
class Failed:
    """A held candidate whose decision raised, or that could not be held: it leaves the
    heap and the state and goes to dead-letter with the error, so one broken message
    cannot block its partition."""

    candidate: Candidate
    error: str
    rendered: Rendered = ()
    source: tuple[str, int] | None = None  # ("topic:partition", offset) when rejected on input


@dataclass(slots=True)
class Refused:
    """An identity link the book refused (a cycle, a group over ``max_group``, an unlink
    of a pair not linked): a dead letter of the link's input record, with the reason."""

    link: Link
    error: str
    decided_wall: int
    rendered: Rendered = ()


Output = Decided | LateFinding | Failed | Refused
