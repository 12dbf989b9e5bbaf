"""Caps across channels and categories (``[[caps]]``): what a cap counts, and when a
deferred candidate has room again.

A cap counts the sends matching its filters (channels, categories, triggers; an empty
filter matches all) within its rolling window before the candidate's send time: its
``created_at``, or, when it was held (quiet hours, a deferral), the time it is held
to, since that is when it would go out. Only sends decided before it in deadline order
count (``rules.View.sent``), so competing candidates are decided by deadline, then
``message_id``, the same offline and live.

``overflow = "suppress"`` is the rule ``cap_exceeded``. ``overflow = "defer"`` holds
the candidate, before any rule, until enough counted sends have left the window,
for at most ``max_defer`` after ``created_at``; still over it then, it is suppressed
with ``cap_deferred_expired``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.core.candidate import Candidate
from streams.core.policy import Cap, Policy
from streams.core.state import CustomerState, SentFact

if TYPE_CHECKING:
    from streams.core.rules import View

HELD_FOR = "cap"


def send_time(cand: Candidate) -> int:
    return cand.deadline if cand.held_for else cand.created_at


def sent_at(s: SentFact, policy: Policy) -> int:
    """When a send went out: its created_at, or, held past its deadline (quiet hours, a
    deferral), the time it was held to: a deferred message must not count an hour
    early and let the next one out right behind it. A candidate is only ever held to
    a time after ``created_at + settle``, so that tells the two apart."""
    if s.deadline > s.created_at + policy.settle.for_trigger(s.trigger):
        return s.deadline
    return s.created_at


def counted(state: CustomerState, cap: Cap, end: int, view: View, policy: Policy) -> list[
    SentFact
]:  # fmt: skip
    """The sends ``cap`` counts in its window before ``end``, in the order they went."""
    start = end - cap.window
    got = []
    for s in state.sent:
        at = sent_at(s, policy)
        if start < at <= end and cap.matches(s.channel, s.category, s.trigger) and view.sent(s):
            got.append((at, s))
    got.sort(key=lambda e: e[0])
    return [s for _at, s in got]


def over(
    state: CustomerState, cand: Candidate, policy: Policy, view: View, deferring: bool = False
) -> list[tuple[Cap, list[SentFact]]]:
    """Every cap matching ``cand`` that has no room, with what it counted (``deferring``:
    only the caps that defer)."""
    end = send_time(cand)
    out = []
    for cap in policy.caps:
        if deferring and cap.overflow != "defer":
            continue
        if not cap.matches(cand.channel, cand.category, cand.trigger):
            continue
        sends = counted(state, cap, end, view, policy)
        if len(sends) >= cap.limit:
            out.append((cap, sends))
    return out


def defer(state: CustomerState, cand: Candidate, policy: Policy, view: View) -> int | None:
    """The deadline a candidate over a deferring cap waits for (None: decide it now)."""
    if not policy.caps:
        return None
    later = cand.deadline
    for cap, sends in over(state, cand, policy, view, deferring=True):
        # room once all but limit - 1 of them have left: the (n - limit + 1)-th oldest
        # leaves the window ``window`` after it was created ("within": t > end - window)
        oldest = sends[len(sends) - cap.limit] if cap.limit else None
        room = None if oldest is None else sent_at(oldest, policy) + cap.window
        limit = cand.created_at + cap.max_defer
        until = limit if room is None or room > limit else room
        later = max(later, until)
    if later <= cand.deadline:
        return None
    cand.deadline = later
    cand.held_for = HELD_FOR
    return later
