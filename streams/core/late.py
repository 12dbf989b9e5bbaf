"""Late evidence: an event read after a decision it would have changed.

A decision never changes once made; what ops get instead is a ``LateFinding``: the
message, the event, and what would have caught it (``late_by_ms``: a longer settle
delay; ``behind_ms``: a larger allowed lateness). Two ways to find one:

- an event is read after messages it concerns were decided (``after_event``);
- a message is decided while an event it concerns is already in state but the
  decision's view left it out: the event was read after its stream passed the
  deadline, or the message was read so late that the view's floor (what pruning may
  already have removed by then) lies above the event (``on_decision``).

Both re-run the event-driven rules in hindsight (every event read so far) and report
only when the answer differs and cites the event. They look at everything the state
still holds, so that what got through is reported whenever it can be. What it may no
longer hold is bounded: messages are kept for the send window and events for the
state retention from where the stream stood, so only an event read that far behind
its stream (``unchecked_event``), or a message read late enough that its look-back
reaches below what pruning left (``unchecked_message``), can miss a finding, and then
depending on when sweeps ran. The engine counts those (``late_unchecked``): they are
deterministic, so what may be missing is never silent.
"""

from __future__ import annotations

from collections.abc import Iterator

from streams.core import rules
from streams.core.clock import NEVER, human, human_span
from streams.core.outcomes import LateFinding
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.state import (
    ConsentFact,
    CustomerState,
    PurchaseFact,
    ReturnFact,
    SentFact,
    SessionFact,
)
from streams.core.vocabulary import EVENT_RULES, LIFTABLE

StateFact = PurchaseFact | ReturnFact | SessionFact | ConsentFact


class LateChecks:
    __slots__ = ("_history", "_lateness", "_max_settle", "_retention", "_send_window")

    def __init__(self, policy: Policy, history: PolicyHistory, send_window: int) -> None:
        self._history = history
        self._lateness = {k: policy.time.allowed_lateness.for_topic(k)
                          for k in ("purchases", "returns", "sessions", "consents")}  # fmt: skip
        self._max_settle = policy.max_settle
        self._retention = policy.state.retention
        self._send_window = send_window

    def use_history(self, history: PolicyHistory) -> None:
        self._history = history

    def finding(
        self,
        state: CustomerState,
        customer_id: str,
        msg: SentFact,
        fact: StateFact,
        kind: str,
        why: str = "",
    ) -> LateFinding | None:
        """Would ``fact``, seen in time, have changed the decision on ``msg``? ``why`` ends
        the reason when it was not the event that came late."""
        policy = self._history.at(msg.created_at)
        again = rules.decide(state, msg, policy, rules.View.hindsight(msg),
                             only=EVENT_RULES)  # fmt: skip
        cited = any(e[0] == kind and e[1] == fact.event_id for e in again.evidence)
        behind = max(0, fact.arr + self._lateness.get(kind, 0) - fact.t) if fact.arr > NEVER else 0
        event = (kind, fact.event_id, fact.t)
        if msg.action != "suppress":
            if again.action == "send" or again.rule is None or not cited:
                return None
            return LateFinding(msg, customer_id, again.rule, (again.reason or "") + why, event,
                               fact.rt - msg.deadline, behind, again.action,
                               policy.version)  # fmt: skip
        if again.action == "suppress" and again.rule == msg.rule:
            return None
        return LateFinding(
            msg, customer_id, msg.rule or "",
            f"{kind} {fact.event_id} at {human(fact.t)} would have lifted {msg.rule}: the "
            f"message would have been {'sent' if again.action == 'send' else again.action}{why}",
            event, fact.rt - msg.deadline, behind, again.action, policy.version,
        )  # fmt: skip

    def after_event(
        self, state: CustomerState, customer_id: str, kind: str, fact: StateFact
    ) -> Iterator[LateFinding]:
        """An event read after messages it concerns were decided: every such message the
        state still holds (see ``unchecked_event`` for the ones it may not)."""
        for msg in (*state.sent, *state.suppressed):
            if msg.deadline < fact.t:
                continue
            found = self.finding(state, customer_id, msg, fact, kind)
            if found is not None:
                yield found

    def unchecked_event(self, fact: StateFact, stream_time: int | None) -> bool:
        """Could ``fact`` concern a message the state has already forgotten? Messages
        are kept for the send window from when they were read, and no prune used a
        stream time later than the current one: an event below that horizon may be
        read after its messages were pruned (or not, depending on when sweeps ran)."""
        if stream_time is None:
            return False
        return fact.t < stream_time - self._max_settle - self._send_window

    def on_decision(
        self, state: CustomerState, customer_id: str, msg: SentFact, seen_from: int
    ) -> Iterator[LateFinding]:
        """Events the state holds that the decision's view left out: read after their
        stream passed this deadline, or older than the view's floor (``seen_from``)
        because the message itself was read late, when pruning may already have passed
        them (see ``unchecked_message`` for the ones it did)."""
        if msg.action == "suppress" and msg.rule not in LIFTABLE:
            return
        d = msg.deadline
        for kind, facts in (
            ("purchases", state.purchases),
            ("returns", state.returns),
            ("sessions", state.sessions),
            ("consents", state.consents),
        ):
            for f in facts:
                if f.t <= d and (d < f.arr or f.t < seen_from):
                    why = "" if d < f.arr else self._message_late(msg)
                    found = self.finding(state, customer_id, msg, f, kind, why)
                    if found is not None:
                        yield found
                        return

    def unchecked_message(self, msg: SentFact, seen_from: int) -> bool:
        """Was ``msg`` read after its deadline had passed on its own stream? Then its view
        starts that much above its look-back (what it sees read in time), and events in
        between may already have been pruned, unknown to ``on_decision``. (Not for a
        suppression no event can lift.)"""
        if msg.action == "suppress" and msg.rule not in LIFTABLE:
            return False
        return seen_from > msg.deadline - self._max_settle - self._retention

    def _message_late(self, msg: SentFact) -> str:
        return (
            f" (the event was read in time; the message was read "
            f"{human_span(max(0, msg.arr - msg.deadline))} after its deadline had passed on its "
            f"stream, when events this old may already have left the state)"
        )
