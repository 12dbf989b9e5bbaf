"""Late evidence: an event read after a decision it would have changed.

A decision never changes once made; what ops get instead is a ``LateFinding``: the
message, the event, and what would have caught it (``late_by_ms``: a longer settle
delay; ``behind_ms``: a larger allowed lateness). Two ways to find one:

- an event is read after messages it concerns were decided (``after_event``);
- a message is decided while an event it concerns is already in state but was read
  after its stream passed the deadline, so the decision's view left it out
  (``on_decision``).

Both re-run the event-driven rules in hindsight (every event read so far) and report
only when the answer differs and cites the event. What a finding may cite is bounded
by the same floors as the decision's view, so findings, like decisions, do not
depend on when sweeps ran.
"""

from __future__ import annotations

from collections.abc import Iterator

from streams.core import rules
from streams.core.clock import NEVER, human
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
        self, state: CustomerState, customer_id: str, msg: SentFact, fact: StateFact, kind: str
    ) -> LateFinding | None:
        """Would ``fact``, seen in time, have changed the decision on ``msg``?"""
        policy = self._history.at(msg.created_at)
        again = rules.decide(state, msg, policy, rules.View.hindsight(msg),
                             only=EVENT_RULES)  # fmt: skip
        cited = any(e[0] == kind and e[1] == fact.event_id for e in again.evidence)
        behind = max(0, fact.arr + self._lateness.get(kind, 0) - fact.t) if fact.arr > NEVER else 0
        event = (kind, fact.event_id, fact.t)
        if msg.action != "suppress":
            if again.action == "send" or again.rule is None or not cited:
                return None
            return LateFinding(msg, customer_id, again.rule, again.reason or "", event,
                               fact.rt - msg.deadline, behind, again.action,
                               policy.version)  # fmt: skip
        if again.action == "suppress" and again.rule == msg.rule:
            return None
        return LateFinding(
            msg, customer_id, msg.rule or "",
            f"{kind} {fact.event_id} at {human(fact.t)} would have lifted {msg.rule}: the "
            f"message would have been {'sent' if again.action == 'send' else again.action}",
            event, fact.rt - msg.deadline, behind, again.action, policy.version,
        )  # fmt: skip

    def after_event(
        self,
        state: CustomerState,
        customer_id: str,
        kind: str,
        fact: StateFact,
        stream_time: int | None,
    ) -> Iterator[LateFinding]:
        """An event read after messages it concerns were decided."""
        # Every message kept from this send horizon on is in state, whenever sweeps ran:
        # stream time never goes back (offline; live it can, when a stream stops being
        # idle), and no prune used a later one. Older ones may or may not have been
        # pruned: leave them out, so that what is reported does not depend on it.
        oldest = (
            NEVER if stream_time is None else stream_time - self._max_settle - self._send_window
        )
        for msg in (*state.sent, *state.suppressed):
            if msg.deadline < fact.t or msg.kept_from < oldest:
                continue
            found = self.finding(state, customer_id, msg, fact, kind)
            if found is not None:
                yield found

    def on_decision(
        self, state: CustomerState, customer_id: str, msg: SentFact, stream_time: int | None
    ) -> Iterator[LateFinding]:
        """Events already in state but read after their stream passed this deadline."""
        if msg.action == "suppress" and msg.rule not in LIFTABLE:
            return
        d = msg.deadline
        # Events from this horizon on are in state, whenever sweeps ran (see after_event);
        # older ones may or may not be: leave them out. The decision never saw any of
        # these events (read after the deadline), pruned or not.
        floor = NEVER if stream_time is None else stream_time - self._max_settle - self._retention
        for kind, facts in (
            ("purchases", state.purchases),
            ("returns", state.returns),
            ("sessions", state.sessions),
            ("consents", state.consents),
        ):
            for f in facts:
                if floor <= f.t <= d < f.arr:
                    found = self.finding(state, customer_id, msg, f, kind)
                    if found is not None:
                        yield found
                        return
