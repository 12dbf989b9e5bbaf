"""The last hour of decisions, kept for the worker's dashboard.

Suppressions per rule per minute (by the wall clock: the dashboard shows what
this worker did in the last hour) and the latest suppressed messages with
reason and evidence. Bounded: 60 minutes of counters, ``keep`` messages.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from streams.core.clock import iso
from streams.core.outcomes import Decided
from streams.core.rules import evidence_json

MINUTE = 60_000


class RecentDecisions:
    def __init__(self, keep: int = 50, minutes: int = 60) -> None:
        self.minutes = minutes
        self.per_minute: dict[int, Counter[str]] = {}  # wall minute -> rule -> suppressions
        self.decided: dict[int, int] = {}  # wall minute -> decisions
        self.latest: deque[dict[str, Any]] = deque(maxlen=keep)

    def observe(self, d: Decided, now_ms: int | None = None) -> None:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        minute = now // MINUTE
        self.decided[minute] = self.decided.get(minute, 0) + 1
        if d.decision.action == "suppress" and d.decision.rule:
            self.per_minute.setdefault(minute, Counter())[d.decision.rule] += 1
            c = d.candidate
            self.latest.appendleft(
                {
                    "message_id": c.message_id,
                    "customer_id": c.customer_id,
                    "trigger": c.trigger,
                    "channel": c.channel,
                    "rule": d.decision.rule,
                    "reason": d.decision.reason,
                    "evidence": evidence_json(d.decision.evidence),
                    "decided_at": iso(d.decided_wall),
                    "policy": d.policy,
                }
            )
        for m in [m for m in self.per_minute if m <= minute - self.minutes]:
            del self.per_minute[m]
        for m in [m for m in self.decided if m <= minute - self.minutes]:
            del self.decided[m]

    def chart(self, now_ms: int | None = None) -> dict[str, Any]:
        """Per rule, suppressions in each of the last ``minutes`` minutes (oldest first)."""
        now = (now_ms if now_ms is not None else int(time.time() * 1000)) // MINUTE
        minutes = list(range(now - self.minutes + 1, now + 1))
        rules = sorted({r for c in self.per_minute.values() for r in c})
        return {
            "minutes": [iso(m * MINUTE)[11:16] for m in minutes],
            "series": {
                r: [self.per_minute.get(m, Counter()).get(r, 0) for m in minutes] for r in rules
            },
            "decisions": sum(self.decided.get(m, 0) for m in minutes),
        }
