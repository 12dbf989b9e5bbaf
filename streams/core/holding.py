"""Holds past a candidate's own deadline, before any rule (the engine's half for quiet
hours and deferring caps; a mixin: ``Engine`` sets these attributes). A held candidate
goes back on its partition's deadline heap at the time it may go; one whose hold cannot
be worked out is dead-lettered alone.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator

from streams.core import caps, rules
from streams.core.candidate import Candidate
from streams.core.outbox import Outbox
from streams.core.outcomes import Failed, Output
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.pruning import Partition
from streams.core.quiet_hold import QuietHold
from streams.core.state import CustomerState
from streams.core.store import StateStore, held_of


class Holding:
    """The engine's quiet-hours and cap-deferral half, and the limits on what is held."""

    store: StateStore
    policy: Policy
    history: PolicyHistory
    counts: Counter[str]
    quiet: QuietHold | None
    outbox: Outbox | None
    _defers: bool

    def view(self, cand: Candidate) -> rules.View:
        raise NotImplementedError

    def _outbox(self, state: CustomerState, outputs: list[Output]) -> None:
        raise NotImplementedError

    def _held_on(self, part: Partition, entry: tuple[int, str, int, str]) -> bool:
        """Before any rule: is the candidate due now held on (quiet hours, a deferring
        cap)? Then it is back in the heap at its new deadline. Also True for an entry a
        rolled-back unit of work left behind (its candidate is due at another time)."""
        deadline, mid, seq, cid = entry
        state, cand = held_of(self.store, cid, seq)
        if state is None or cand is None or cand.deadline != deadline:
            return True
        later = None
        before = (cand.held_for, cand.zone_used)
        view = self.view(cand)
        if self.quiet is not None:
            later = self.quiet.hold(state, cand, view.arrived_by)
            self.counts["quiet_held"] += later is not None
        if later is None and self._defers:
            later = caps.defer(state, cand, self.history.at(cand.created_at), view)
            self.counts["cap_deferred"] += later is not None
        if later is None:
            if (cand.held_for, cand.zone_used) != before:
                self.store.put(cid, state)  # a store may hand out copies: keep what changed
            return False
        heapq.heappush(part.heap, (later, mid, seq, cid))
        self.store.put(cid, state)
        return True

    def _fail(self, cid: str, seq: int, exc: Exception) -> Iterator[Output]:
        """A held candidate whose hold could not be worked out: out of the state, to
        dead-letter with the error, and nothing else of its partition held up."""
        state, cand = held_of(self.store, cid, seq)
        if state is None or cand is None:
            return
        state.held.remove(cand)
        failed = Failed(cand, f"internal error holding {cand.message_id}: "
                              f"{type(exc).__name__}: {exc}")  # fmt: skip
        self.counts["failed"] += 1
        self._outbox(state, [failed])
        self.store.put(cid, state)
        yield failed

    def _full(self, state: CustomerState, cand: Candidate) -> str | None:
        """Why ``cand`` cannot be held for this customer, if it cannot."""
        lim = self.policy.state
        if len(state.held) >= lim.max_held:
            return (
                f"customer {cand.customer_id} already has {len(state.held)} held candidates "
                f"(state.max_held {lim.max_held}); {cand.message_id} was not held"
            )
        size = len(cand.raw) + sum(len(c.raw) for c in state.held)
        size += sum(len(e[3]) for e in state.outbox)
        if size > lim.max_held_bytes:
            return (
                f"customer {cand.customer_id}'s held and unpublished messages would take "
                f"{size} bytes (state.max_held_bytes {lim.max_held_bytes}); "
                f"{cand.message_id} was not held"
            )
        return None
