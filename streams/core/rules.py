"""The rules, one function per rule id, in the order the contract checks them.

Each rule is a small function of (customer state, message, SKUs still in the
message, policy) that returns ``None`` or an ``Outcome`` with a reason a
person can read and the evidence (topic, event id, event time). Rules only
look at events with event time at or before the message's deadline ``D``:
the state may already hold later events (other topics read ahead), and they
must not change the decision.

``decide`` walks the rules in order; the first that suppresses wins. The
two recommendation rules may instead *strip* SKUs (a rewrite) and let the
message go on to the next rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from streams.core import caps
from streams.core.candidate import Candidate, content_key
from streams.core.clock import human, human_span, iso
from streams.core.policy import (
    FrequencyCapPolicy,
    Policy,
    RecommendationPolicy,
    StalePolicy,
    StaleSignalPolicy,
    WelcomeBackPolicy,
    WinBackPolicy,
)
from streams.core.state import CustomerState, PurchaseFact, ReturnFact, SentFact
from streams.core.vocabulary import RULES

Evidence = tuple[str, str, int]  # (topic, event_id, event time ms)

ALWAYS = 2**62


class MessageView(Protocol):
    """What a rule reads of a message: a held ``Candidate`` or an already ``SentFact``."""

    @property
    def message_id(self) -> str: ...
    @property
    def created_at(self) -> int: ...
    @property
    def deadline(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def trigger(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def cart_updated_at(self) -> int | None: ...
    @property
    def order_id(self) -> str | None: ...
    @property
    def skus(self) -> tuple[str, ...] | None: ...
    @property
    def is_marketing(self) -> bool: ...


# View, Outcome and Decision are built for every decision: plain slotted classes, as
# a frozen dataclass's __init__ (object.__setattr__ per field) costs several times as
# much. Nothing changes one after it is built.
@dataclass(slots=True)
class View:
    """What one decision may look at, so that it is the same in every run.

    - events at or before the deadline that were read *in time*: before their own
      stream's frontier passed the deadline (``arr <= arrived_by``). An event read
      later is late whatever the interleaving of topics, so it never counts;
    - nothing older than what pruning may already have removed (the ``*_from``
      floors, derived from the frontier the message itself was read at: for a
      message read in order they lie below every window and change nothing);
    - messages decided before this one in deadline order that were read before
      its deadline passed on their own stream (``arr``), so a late trigger is not
      decided against later sends, and a customer whose messages come through
      two streams (two producers, a re-route) sees the same history either way.

    ``hindsight`` (late-evidence checks) sees every event read so far.
    """

    deadline: int
    arrived_by: int
    events_from: int
    sends_from: int
    ids_from: int
    orders_from: int
    key: tuple[int, str, int]  # (deadline, message_id, seq): its place in deadline order

    def fact(self, t: int, arr: int) -> bool:
        return self.events_from <= t <= self.deadline and arr <= self.arrived_by

    def sent(self, s: SentFact) -> bool:
        """Decided before this one in deadline order, and read before its deadline passed
        on its own stream: then it was certainly decided first, in every interleaving."""
        return (
            (s.deadline, s.message_id, s.seq) < self.key
            and s.arr <= self.arrived_by
            and s.created_at >= self.sends_from
        )

    @classmethod
    def hindsight(cls, msg: MessageView) -> View:
        never = -ALWAYS
        return cls(msg.deadline, ALWAYS, never, never, never, never, (ALWAYS, "", 0))


@dataclass(slots=True)
class Outcome:
    rule: str
    reason: str
    evidence: tuple[Evidence, ...]
    removed: tuple[str, ...] = ()  # SKUs stripped; a rewrite when some SKUs remain
    suppress: bool = True
    why: tuple[str, ...] = ()  # per removed SKU: "SKU-1 returned at ..."


@dataclass(slots=True)
class Decision:
    action: Literal["send", "rewrite", "suppress"]
    rule: str | None
    reason: str | None
    evidence: tuple[Evidence, ...]
    removed_skus: tuple[str, ...]
    skus: tuple[str, ...] | None  # what is sent (after rewrite)
    monitored: tuple[str, ...]  # rules in monitor mode that would have fired


def _within(t: int, end: int, window: int) -> bool:
    """``end - window < t <= end``: the contract's "within W before X"."""
    return end - window < t <= end


# ---------------------------------------------------------------- the rules


def duplicate_message(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    seen = state.decided.get(msg.message_id)
    if seen is None or seen[1] < view.ids_from:
        return None
    created, deadline, seq, arr = seen
    if (deadline, msg.message_id, seq) >= view.key or arr > view.arrived_by:
        return None  # not a copy decided before this one (see View)
    return Outcome(
        "duplicate_message",
        f"message {msg.message_id} was already decided (the first copy was created at "
        f"{human(created)})",
        (("outbound", msg.message_id, created),),
    )


def consent_withdrawn(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    latest = state.consent_at(msg.channel, msg.deadline, view.arrived_by)
    if latest is None or not latest.withdrawn:
        return None
    return Outcome(
        "consent_withdrawn",
        f"the customer withdrew {msg.channel} consent at {human(latest.t)}",
        (("consents", latest.event_id, latest.t),),
    )


def stale_trigger(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    if not isinstance(msg, Candidate):
        return None  # staleness is a property of the record, not of later events
    rp = policy.rules.stale_trigger
    assert isinstance(rp, StalePolicy)
    age = msg.record_time - msg.created_at
    if age <= rp.max_age:
        return None
    return Outcome(
        "stale_trigger",
        f"the trigger reached Kafka {human_span(age)} after it was created at "
        f"{human(msg.created_at)} (limit {human_span(rp.max_age)})",
        (("outbound", msg.message_id, msg.created_at),),
    )


def cart_already_purchased(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    since = msg.cart_updated_at if msg.cart_updated_at is not None else msg.created_at
    for p in state.purchases:
        if since <= p.t and view.fact(p.t, p.arr):
            return Outcome(
                "cart_already_purchased",
                f"order {p.order_id} was placed at {human(p.t)}, after the cart was last "
                f"updated at {human(since)}",
                (("purchases", p.event_id, p.t),),
            )
    return None


def welcome_back_to_new_customer(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    rp = policy.rules.welcome_back_to_new_customer
    assert isinstance(rp, WelcomeBackPolicy)
    ep = state.epoch_at(msg.created_at)
    since = ep.start if ep is not None else -ALWAYS
    started = [
        s for s in state.sessions if since <= s.t <= msg.created_at and s.arr <= view.arrived_by
    ]
    count = (ep.pruned_sessions if ep is not None else 0) + len(started)
    if count >= rp.min_sessions:
        return None
    noun = "session" if count == 1 else "sessions"
    return Outcome(
        "welcome_back_to_new_customer",
        f"the customer has started only {count} {noun} by {human(msg.created_at)}; "
        f"welcome_back needs at least {rp.min_sessions}",
        tuple(("sessions", s.event_id, s.t) for s in started),
    )


def welcome_to_existing_customer(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    ep = state.epoch_at(msg.created_at)
    if ep is None:
        return None
    first: tuple[str, int] | None = None
    fp = ep.first_purchase
    if fp is not None and fp[1] <= msg.created_at and fp[2] <= view.arrived_by:
        first = (fp[0], fp[1])
    else:
        for p in state.purchases:
            if ep.start <= p.t <= msg.created_at and p.arr <= view.arrived_by:
                first = (p.event_id, p.t)
                break
    if first is None:
        return None
    order = next((p.order_id for p in state.purchases if p.event_id == first[0]), None)
    what = f"order {order}" if order else "a purchase"
    return Outcome(
        "welcome_to_existing_customer",
        f"the customer already placed {what} at {human(first[1])}",
        (("purchases", first[0], first[1]),),
    )


def review_request_for_returned_order(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    order_id = msg.order_id
    if order_id is None:
        return None
    order = state.orders.get(order_id)
    if order is None or order.last < view.orders_from:
        return None
    ordered: dict[str, int] = {}
    p = order.purchase
    if p is not None and p[1] <= msg.deadline and p[2] <= view.arrived_by:
        for sku, qty in order.items:
            ordered[sku] = ordered.get(sku, 0) + qty
    reviewed = list(msg.skus) if msg.skus else list(ordered)
    if not reviewed:
        return None
    returned: dict[str, int] = {}
    evidence: list[Evidence] = []
    for event_id, t, arr, items in order.returns:
        if t > msg.deadline or arr > view.arrived_by:
            continue
        hit = False
        for sku, qty in items:
            if sku in reviewed:
                returned[sku] = returned.get(sku, 0) + qty
                hit = True
        if hit:
            evidence.append(("returns", event_id, t))
    # Line-item level: a SKU counts as returned once as many units came back as were bought.
    for sku in reviewed:
        if returned.get(sku, 0) < max(ordered.get(sku, 1), 1):
            return None
    return Outcome(
        "review_request_for_returned_order",
        f"every reviewed item of order {order_id} was returned ({', '.join(reviewed)})",
        tuple(sorted(evidence, key=lambda e: e[2])),
    )


def win_back_active_customer(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    rp = policy.rules.win_back_active_customer
    assert isinstance(rp, WinBackPolicy)
    end = msg.created_at
    last: Evidence | None = None
    for p in state.purchases:
        if (
            _within(p.t, end, rp.window)
            and view.fact(p.t, p.arr)
            and (last is None or p.t > last[2])
        ):
            last = ("purchases", p.event_id, p.t)
    for s in state.sessions:
        if (
            _within(s.t, end, rp.window)
            and view.fact(s.t, s.arr)
            and (last is None or s.t > last[2])
        ):
            last = ("sessions", s.event_id, s.t)
    if last is None:
        return None
    what = "bought" if last[0] == "purchases" else "started a session"
    return Outcome(
        "win_back_active_customer",
        f"the customer {what} at {human(last[2])}, {human_span(end - last[2])} before the "
        f"win-back was created (window {human_span(rp.window)})",
        (last,),
    )


def _strip(
    rule_id: str,
    rp: RecommendationPolicy,
    window: int,
    skus: tuple[str, ...],
    hits: dict[str, Evidence],
    verb: str,
) -> Outcome | None:
    removed = tuple(s for s in skus if s in hits)
    if not removed:
        return None
    evidence = tuple(dict.fromkeys(hits[s] for s in removed))
    why = tuple(f"{s} {verb} at {human(hits[s][2])}" for s in removed)
    when = ", ".join(f"{s} at {human(hits[s][2])}" for s in removed)
    left = len(skus) - len(removed)
    if left == 0 or rp.action == "suppress":
        return Outcome(
            rule_id,
            f"every recommended product was {verb} within {human_span(window)}: {when}",
            evidence,
            removed,
            why=why,
        )
    return Outcome(
        rule_id,
        f"removed {len(removed)} of {len(skus)} products {verb} "
        f"within {human_span(window)}: {when}",
        evidence,
        removed,
        suppress=False,
        why=why,
    )


def _recent_skus(
    facts: Sequence[PurchaseFact | ReturnFact],
    topic: str,
    msg: MessageView,
    window: int,
    view: View,
) -> dict[str, Evidence]:
    """SKU -> the latest event within ``window`` before ``created_at`` (and by ``D``) naming it."""
    hits: dict[str, Evidence] = {}
    for f in facts:
        if _within(f.t, msg.created_at, window) and view.fact(f.t, f.arr):
            for sku, _qty in f.items:
                hits[sku] = (topic, f.event_id, f.t)
    return hits


def recommends_returned_product(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    rp = policy.rules.recommends_returned_product
    hits = _recent_skus(state.returns, "returns", msg, rp.window, view)
    return _strip("recommends_returned_product", rp, rp.window, skus, hits, "returned")


def recommends_recent_purchase(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    rp = policy.rules.recommends_recent_purchase
    hits = _recent_skus(state.purchases, "purchases", msg, rp.window, view)
    return _strip("recommends_recent_purchase", rp, rp.window, skus, hits, "bought")


def recommends_from_stale_signal(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    """A recommendation chosen from browsing months ago is not a recommendation: SKUs
    whose ``context.basis`` is older than ``max_signal_age`` before created_at go."""
    if not isinstance(msg, Candidate) or not msg.basis:
        return None
    rp = policy.rules.recommends_from_stale_signal
    assert isinstance(rp, StaleSignalPolicy)
    oldest_fresh = msg.created_at - rp.max_signal_age  # "within W before X": X - W < t
    hits: dict[str, Evidence] = {}
    for sku, t in msg.basis:
        if t <= oldest_fresh and sku in skus:
            hits[sku] = ("outbound", msg.message_id, t)
    removed = tuple(s for s in skus if s in hits)
    if not removed:
        return None
    why = tuple(
        f"{s}'s signal is from {human(hits[s][2])}, {human_span(msg.created_at - hits[s][2])} "
        "before the recommendation"
        for s in removed
    )
    limit = human_span(rp.max_signal_age)
    evidence = tuple(hits[s] for s in removed)
    if len(removed) == len(skus) or rp.action == "suppress":
        return Outcome(
            "recommends_from_stale_signal",
            f"every recommended product comes from a signal older than {limit}: " + "; ".join(why),
            evidence,
            removed,
            why=why,
        )
    return Outcome(
        "recommends_from_stale_signal",
        f"removed {len(removed)} of {len(skus)} products recommended from signals older than "
        f"{limit}: " + "; ".join(why),
        evidence,
        removed,
        suppress=False,
        why=why,
    )


def duplicate_content(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    if not isinstance(msg, Candidate):
        return None
    window = policy.rules.duplicate_content.window
    key = content_key(
        msg.trigger, msg.channel, skus if msg.skus is not None else None, msg.payload_hash
    )
    for s in reversed(state.sent):
        if s.content == key and _within(s.created_at, msg.created_at, window) and view.sent(s):
            return Outcome(
                "duplicate_content",
                f"the same {msg.trigger} on {msg.channel} with the same products and payload "
                f"was sent as {s.message_id} (created {human(s.created_at)})",
                (("send-queue", s.message_id, s.created_at),),
            )
    return None


def frequency_cap(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    if not isinstance(msg, Candidate):
        return None
    rp = policy.rules.frequency_cap
    assert isinstance(rp, FrequencyCapPolicy)
    sent = [
        s
        for s in state.sent
        if s.is_marketing
        and s.channel == msg.channel
        and _within(s.created_at, msg.created_at, rp.window)
        and view.sent(s)
    ]
    if len(sent) < rp.limit:
        return None
    return Outcome(
        "frequency_cap",
        f"{len(sent)} marketing messages were already sent on {msg.channel} in the "
        f"{human_span(rp.window)} before {human(msg.created_at)} (limit {rp.limit})",
        tuple(("send-queue", s.message_id, s.created_at) for s in sent),
    )


def cap_exceeded(
    state: CustomerState, msg: MessageView, skus: tuple[str, ...], policy: Policy, view: View
) -> Outcome | None:
    """Every cap of ``[[caps]]`` matching the message must have room (see ``caps``)."""
    if not policy.caps or not isinstance(msg, Candidate):
        return None
    full = caps.over(state, msg, policy, view)
    if not full:
        return None
    cap, sends = full[0]
    rule = "cap_deferred_expired" if cap.overflow == "defer" else "cap_exceeded"
    held = f", still after deferring it until {human(msg.deadline)}" if msg.held_for else ""
    return Outcome(
        rule,
        f"cap {cap.name}: {len(sends)} messages were already sent in the "
        f"{human_span(cap.window)} before {human(caps.send_time(msg))} (limit {cap.limit}"
        f"){held}",
        tuple(("send-queue", s.message_id, s.created_at) for s in sends),
    )


RuleFn = Callable[[CustomerState, MessageView, tuple[str, ...], Policy, View], Outcome | None]

FUNCTIONS: dict[str, RuleFn] = {
    "duplicate_message": duplicate_message,
    "consent_withdrawn": consent_withdrawn,
    "stale_trigger": stale_trigger,
    "cart_already_purchased": cart_already_purchased,
    "welcome_back_to_new_customer": welcome_back_to_new_customer,
    "welcome_to_existing_customer": welcome_to_existing_customer,
    "review_request_for_returned_order": review_request_for_returned_order,
    "win_back_active_customer": win_back_active_customer,
    "recommends_returned_product": recommends_returned_product,
    "recommends_recent_purchase": recommends_recent_purchase,
    "duplicate_content": duplicate_content,
    "frequency_cap": frequency_cap,
    "recommends_from_stale_signal": recommends_from_stale_signal,
    "cap_exceeded": cap_exceeded,
}
"""Rule id -> its function; the order and what each applies to are ``vocabulary.RULES``."""


Plan = tuple[tuple[str, RuleFn, str], ...]
"""The rules one kind of message goes through, in contract order: (id, function, mode)."""


def plan(policy: Policy, trigger: str, is_marketing: bool) -> Plan:
    """Which rules apply to a trigger under a policy: computed once per (policy, trigger,
    category) by the caller, not once per rule per message."""
    out = []
    for spec in RULES:
        rp = policy.rule(spec.id)
        if not rp.enabled:
            continue
        if spec.marketing_only and not is_marketing:
            continue
        if spec.triggers is not None and trigger not in spec.triggers:
            continue
        if spec.needs is not None and not getattr(policy, spec.needs):
            continue  # nothing configured to check: not a call per message
        out.append((spec.id, FUNCTIONS[spec.id], rp.mode))
    return tuple(out)


def decide(
    state: CustomerState,
    msg: MessageView,
    policy: Policy,
    view: View,
    only: frozenset[str] | None = None,
    rules: Plan | None = None,
) -> Decision:
    """Run the rules in contract order; ``only`` restricts to a subset (late checks).
    ``rules``: the message's ``plan``, when the caller keeps one."""
    skus: tuple[str, ...] = tuple(msg.skus or ())
    removed: list[str] = []
    rewrite_rule: str | None = None
    rewrite_reasons: list[str] = []
    rewrite_evidence: list[Evidence] = []
    whys: list[str] = []
    monitored: list[str] = []
    if rules is None:
        rules = plan(policy, msg.trigger, msg.is_marketing)
    for rule_id, fn, mode in rules:
        if only is not None and rule_id not in only:
            continue
        out = fn(state, msg, skus, policy, view)
        if out is None:
            continue
        if mode == "monitor":
            monitored.append(rule_id)
            continue
        if out.suppress:
            if removed and out.removed and rewrite_rule is not None:
                # Two strip rules emptied it between them: the contract names the first,
                # and the reason says why each SKU went.
                why = "every recommended product was removed: " + ", ".join(whys + list(out.why))
                evidence = (*rewrite_evidence, *out.evidence)
                return Decision("suppress", rewrite_rule, why, evidence, (), skus, (*monitored,))
            # A suppressed message is not sent, so nothing was "removed" from it. The rule
            # is the outcome's: a cap that deferred first names cap_deferred_expired.
            return Decision("suppress", out.rule, out.reason, out.evidence, (), skus, (*monitored,))
        skus = tuple(s for s in skus if s not in out.removed)
        removed.extend(out.removed)
        whys.extend(out.why)
        rewrite_rule = rewrite_rule or rule_id
        rewrite_reasons.append(out.reason)
        rewrite_evidence.extend(out.evidence)
    sent_skus = skus if msg.skus is not None else None
    if removed:
        reason = "; ".join(rewrite_reasons)
        return Decision("rewrite", rewrite_rule, reason, tuple(rewrite_evidence), tuple(removed),
                        sent_skus, tuple(monitored))  # fmt: skip
    return Decision("send", None, None, (), (), sent_skus, tuple(monitored))


def evidence_json(evidence: Sequence[Evidence]) -> list[dict[str, str]]:
    return [{"topic": t, "event_id": e, "occurred_at": iso(ms)} for t, e, ms in evidence]
