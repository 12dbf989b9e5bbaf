"""Notice a rule that suddenly suppresses far more than it used to.

A broken upstream feed or a bad policy change shows up as one rule's
suppression rate jumping: every abandoned-cart mail suppressed because
purchases arrive with wrong customer ids, say. Per rule, the share of
decisions it suppressed over the recent ``window`` is compared with its share
over the ``baseline`` before that; a rate at least ``factor`` times the
baseline plus ``min_jump``, on at least ``min_count`` suppressions, is a
misfire until it falls back.

Time is the candidates' ``created_at`` (event time), not the wall clock: a
replay of the same history finds the same misfires, and a worker catching up
on a backlog compares the backlog's hours with each other, not with the
minute it happens to read them in. Counts are kept per minute, for at most
``window + baseline``, so memory does not grow with traffic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from streams.core.policy import Misfire

MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class Alarm:
    rule: str
    recent_rate: float
    baseline_rate: float
    recent_suppressed: int
    recent_decisions: int
    baseline_decisions: int

    def describe(self) -> str:
        return (
            f"rule {self.rule} misfiring? it suppressed {self.recent_rate:.0%} of the last "
            f"{self.recent_decisions} decisions ({self.recent_suppressed}) against "
            f"{self.baseline_rate:.0%} of {self.baseline_decisions} before"
        )


class MisfireDetector:
    def __init__(self, config: Misfire) -> None:
        self.config = config
        self._decisions: Counter[int] = Counter()  # minute -> decisions
        self._suppressed: dict[str, Counter[int]] = {}  # rule -> minute -> suppressions
        self._latest = -1  # newest minute seen
        self.active: dict[str, Alarm] = {}

    def observe(self, created_ms: int, suppressed_by: str | None) -> None:
        minute = created_ms // MINUTE
        self._decisions[minute] += 1
        if suppressed_by is not None:
            self._suppressed.setdefault(suppressed_by, Counter())[minute] += 1
        if minute > self._latest:
            self._latest = minute
            self._forget()

    def _forget(self) -> None:
        keep_from = self._latest - (self.config.window + self.config.baseline) // MINUTE
        for counts in (self._decisions, *self._suppressed.values()):
            for m in [m for m in counts if m < keep_from]:
                del counts[m]

    def check(self) -> tuple[list[Alarm], list[str]]:
        """(misfires that started, rules that recovered) since the last check."""
        c = self.config
        recent_from = self._latest - c.window // MINUTE + 1
        base_from = recent_from - c.baseline // MINUTE
        recent_n = sum(n for m, n in self._decisions.items() if m >= recent_from)
        base_n = sum(n for m, n in self._decisions.items() if base_from <= m < recent_from)
        started: list[Alarm] = []
        now: dict[str, Alarm] = {}
        for rule, counts in self._suppressed.items():
            r = sum(n for m, n in counts.items() if m >= recent_from)
            b = sum(n for m, n in counts.items() if base_from <= m < recent_from)
            if recent_n == 0 or r < c.min_count:
                continue
            rate, base_rate = r / recent_n, (b / base_n if base_n else 0.0)
            if rate >= c.factor * base_rate + c.min_jump:
                now[rule] = Alarm(rule, rate, base_rate, r, recent_n, base_n)
                if rule not in self.active:
                    started.append(now[rule])
        recovered = [rule for rule in self.active if rule not in now]
        self.active = now
        return started, recovered
