"""Holding a candidate for quiet hours, and what its decision says when the hold ran out.

The engine asks ``hold`` when a candidate's deadline has passed (before any rule):
inside the customer's quiet window, its deadline moves to the window's end plus its
spread (or to ``max_hold`` after created_at, whichever comes first) and it waits in
the same heap as every held candidate. Decided then, every rule runs as of that
time; ``expiry`` turns a decision that would send, at a deadline still inside the
window, into ``quiet_hours_expired``.
"""

from __future__ import annotations

from streams.core import rules
from streams.core.candidate import Candidate
from streams.core.clock import human, human_span
from streams.core.policy import QuietHours
from streams.core.quiet_hours import spread_of, window_end, zone
from streams.core.state import CustomerState

HELD_FOR = "quiet_hours"


class QuietHold:
    __slots__ = ("channels", "end", "policy", "start")

    def __init__(self, policy: QuietHours) -> None:
        self.policy = policy
        self.channels = frozenset(policy.channels)
        self.start, self.end = policy.start_min, policy.end_min

    def zone_of(self, state: CustomerState, cand: Candidate, arrived_by: int) -> tuple[str, str]:
        """(zone, where it came from): the candidate's context, else the latest session's
        at or before its deadline, else the policy's default."""
        if cand.zone:
            return cand.zone, "context"
        seen = state.zone_at(cand.deadline, arrived_by)
        if seen is not None:
            return seen, "session"
        return self.policy.default_timezone, "default"

    def hold(self, state: CustomerState, cand: Candidate, arrived_by: int) -> int | None:
        """The deadline ``cand`` is held on to, when its own falls inside quiet hours."""
        if (
            cand.held_for == HELD_FOR  # released from quiet hours just now
            or cand.channel not in self.channels
            or not cand.is_marketing  # transactional messages are exempt
        ):
            return None
        name, source = self.zone_of(state, cand, arrived_by)
        tz = zone(name)
        if tz is None:  # pragma: no cover - names are checked when read
            return None
        ends = window_end(cand.deadline, tz, self.start, self.end)
        if ends is None:
            return None
        release = ends + spread_of(cand.message_id, self.policy.spread)
        limit = cand.created_at + self.policy.max_hold.for_trigger(cand.trigger)
        later = min(release, limit)
        cand.held_for = HELD_FOR  # also when it cannot wait longer: then it expires now
        cand.zone_used = f"{name}|{source}"
        if later <= cand.deadline:
            return None
        cand.deadline = later
        return later

    def expiry(self, cand: Candidate, decision: rules.Decision) -> rules.Decision:
        """A held candidate whose deadline is still inside quiet hours ran out of hold."""
        name, _, source = cand.zone_used.partition("|")
        tz = zone(name)
        if tz is None or window_end(cand.deadline, tz, self.start, self.end) is None:
            return decision
        hold = self.policy.max_hold.for_trigger(cand.trigger)
        reason = (
            f"quiet hours {self.policy.start}-{self.policy.end} in {name} ({source}) had not "
            f"ended by {human(cand.deadline)}, {human_span(hold)} after it was created "
            f"(max_hold for {cand.trigger})"
        )
        return rules.Decision(
            "suppress", "quiet_hours_expired", reason, (), (), decision.skus, decision.monitored
        )
