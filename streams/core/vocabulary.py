"""The contract's words, each listed once: triggers, channels, categories, actions,
input kinds and rule ids with what each rule applies to.

Everything else (the policy's per-rule settings, the rules table, the state
encoding, the generators, the pydantic enums' consistency test) reads these
tuples instead of spelling the words again, so adding a trigger or a rule is one
edit here plus its function.

Order matters twice. ``RULES`` is the order the contract checks rules in (the
first that suppresses wins). ``TRIGGERS``, ``CHANNELS``, ``CATEGORIES`` and
``ACTIONS`` are also the codes of the changelog's state format (a trigger is
stored as its index): append, never reorder.
"""

from __future__ import annotations

from dataclasses import dataclass

TRIGGERS: tuple[str, ...] = (
    "abandoned_cart",
    "welcome",
    "welcome_back",
    "product_recommendation",
    "review_request",
    "win_back",
    "replenishment",
    "promotion",
)
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "in_app")
CATEGORIES: tuple[str, ...] = ("marketing", "transactional")
MARKETING = "marketing"
ACTIONS: tuple[str, ...] = ("send", "rewrite", "suppress")

INPUT_KINDS: tuple[str, ...] = (
    "purchases", "returns", "sessions", "consents", "outbound", "identities",
)  # fmt: skip
"""The input topics by role (their configured names may differ); also the event kinds
a history file's ``topic`` names."""

EVENT_KINDS: tuple[str, ...] = INPUT_KINDS[:4]
"""Inputs that are facts about the customer (not candidate messages)."""

REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    "abandoned_cart": ("cart_updated_at",),
    "product_recommendation": ("skus",),
    "replenishment": ("skus",),
    "review_request": ("order_id",),
}
"""The ``context`` fields a trigger's rule reads: without them it cannot be checked."""


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule id and what it applies to.

    ``marketing_only``: transactional messages skip it. ``triggers``: the triggers it
    reads (None: all). ``event_driven``: a late purchase, return, session or consent
    can change its answer (late evidence is checked for it). ``liftable``: a late event
    can lift its suppression (a grant, a session, the order's purchase), so such
    suppressions are remembered for late evidence the other way."""

    id: str
    marketing_only: bool
    triggers: frozenset[str] | None = None
    event_driven: bool = False
    liftable: bool = False
    needs: str | None = None  # a policy section that must not be empty for it to check


RULES: tuple[RuleSpec, ...] = (
    RuleSpec("duplicate_message", False),
    RuleSpec("consent_withdrawn", True, event_driven=True, liftable=True),
    RuleSpec("stale_trigger", False),
    RuleSpec("cart_already_purchased", True, frozenset({"abandoned_cart"}), event_driven=True),
    RuleSpec(
        "welcome_back_to_new_customer",
        True,
        frozenset({"welcome_back"}),
        event_driven=True,
        liftable=True,
    ),
    RuleSpec("welcome_to_existing_customer", True, frozenset({"welcome"}), event_driven=True),
    RuleSpec(
        "review_request_for_returned_order",
        True,
        frozenset({"review_request"}),
        event_driven=True,
        liftable=True,
    ),
    RuleSpec("win_back_active_customer", True, frozenset({"win_back"}), event_driven=True),
    RuleSpec(
        "recommends_returned_product",
        True,
        frozenset({"product_recommendation"}),
        event_driven=True,
    ),
    RuleSpec(
        "recommends_recent_purchase",
        True,
        frozenset({"product_recommendation"}),
        event_driven=True,
    ),
    RuleSpec("recommends_from_stale_signal", True, frozenset({"product_recommendation"})),
    RuleSpec("duplicate_content", True),
    RuleSpec("frequency_cap", True),
    RuleSpec("cap_exceeded", False, needs="caps"),  # each cap says what it counts
)
"""Every rule, in the order the contract checks them (the contract's table lists
``recommends_from_stale_signal`` later, but it strips SKUs right after the two
recommendation rules, so it is checked before the content and cap rules)."""

CAMPAIGN_RULES: tuple[str, ...] = ("campaign_held_expired", "campaign_killed")
"""Rule ids of whole-campaign outcomes (campaigns): given after every per-message rule
let the candidate through, so they are not in ``RULES``."""

CONFIGURED: frozenset[str] = frozenset(r.id for r in RULES if r.needs)
"""Rules that can only fire once the policy configures them (``[[caps]]``)."""

STRIPPING: frozenset[str] = frozenset(
    {"recommends_returned_product", "recommends_recent_purchase", "recommends_from_stale_signal"}
)
"""Rules that remove SKUs from a message (a rewrite) rather than only suppress it: what a
message "would send" is what is left after them (campaign content fingerprints)."""

RULE_IDS: tuple[str, ...] = tuple(r.id for r in RULES)
"""Stable rule ids in the order they are checked (the first that suppresses wins)."""

EVENT_RULES: frozenset[str] = frozenset(r.id for r in RULES if r.event_driven)
"""Rules whose answer a late purchase, return, session or consent can change."""

LIFTABLE: frozenset[str] = frozenset(r.id for r in RULES if r.liftable)
"""Suppressions that a late event (a grant, a session, the order's purchase) can lift."""
