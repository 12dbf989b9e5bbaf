"""``trigger-sanity stats --since 1h``: what was decided over a time range, and when.

Counts come from the output topics themselves (positioned by record time,
never scanned from the beginning), so they cover every worker and survive
restarts; "held now" is the one number only a live worker knows, asked of
its stats page when it answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streams.core.clock import iso
from streams.ops.inspect import consume, row_of
from streams.settings import Settings

ROLES = ("send_queue", "suppressed", "dead_letter", "late_evidence")


@dataclass
class DecisionStats:
    since_ms: int
    until_ms: int
    interval_ms: int
    actions: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)  # suppressions and rewrites
    triggers: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    late_evidence: int = 0
    buckets: dict[str, Counter[int]] = field(default_factory=dict)  # rule -> bucket -> n
    held_now: int | None = None
    holds: dict[str, int] = field(default_factory=dict)  # since the worker started
    held_source: str = ""
    # the worker's transactions (committed, aborted, fenced...), when it answers and
    # runs exactly_once
    transactions: dict[str, Any] | None = None
    # tripped or killed campaigns, as the worker's stats page lists them
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    # identity links read since the worker started (links, unlinks, refused), when it answers
    links: dict[str, int] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return sum(self.actions[a] for a in ("send", "rewrite", "suppress"))

    @property
    def suppression_rate(self) -> float:
        return self.actions["suppress"] / self.decisions if self.decisions else 0.0

    def add(self, role: str, value: bytes | None, key: bytes | None, ts: int) -> None:
        row = row_of(role, value, key, ts)
        if role == "dead_letter":
            self.dead_letters += 1
            return
        if role == "late_evidence":
            self.late_evidence += 1
            return
        if row is None:
            return
        if role == "suppressed":
            action, rule = "suppress", row.what
        elif row.what.startswith("released: "):
            action, rule = "released", None
        elif row.what.startswith("rewrite: "):
            action, rule = "rewrite", row.what.split(": ", 1)[1]
        else:
            action, rule = row.what, None
        self.actions[action] += 1
        if action == "released":
            return
        self.triggers[row.trigger] += 1
        self.channels[row.channel] += 1
        if rule is not None:
            self.rules[rule] += 1
            bucket = (ts - self.since_ms) // self.interval_ms
            self.buckets.setdefault(rule, Counter())[bucket] += 1

    def as_json(self) -> dict[str, Any]:
        n = max(1, -(-(self.until_ms - self.since_ms) // self.interval_ms))
        return {
            "since": iso(self.since_ms),
            "until": iso(self.until_ms),
            "decisions": self.decisions,
            "actions": dict(self.actions),
            "suppression_rate": round(self.suppression_rate, 4),
            "rules": dict(self.rules),
            "triggers": dict(self.triggers),
            "channels": dict(self.channels),
            "dead_letters": self.dead_letters,
            "late_evidence": self.late_evidence,
            "held_now": self.held_now,
            "holds": self.holds,
            "campaigns": self.campaigns,
            "links": self.links,
            "transactions": self.transactions,
            "interval_s": self.interval_ms // 1000,
            "per_rule_per_interval": {
                rule: [b.get(i, 0) for i in range(n)] for rule, b in sorted(self.buckets.items())
            },
        }

    def render(self) -> str:
        a = self.actions
        held = f"{self.held_now}" if self.held_now is not None else "unknown"
        lines = [
            f"decisions {iso(self.since_ms)} .. {iso(self.until_ms)}: {self.decisions:,}  "
            f"send {a['send']:,}  rewrite {a['rewrite']:,}  suppress {a['suppress']:,} "
            f"({self.suppression_rate:.1%})  released by hand {a['released']:,}",
            f"dead letters {self.dead_letters:,}   late evidence {self.late_evidence:,}   "
            f"held now {held} ({self.held_source})",
        ]
        if any(self.holds.values()):
            lines.append(
                "held past their deadline (this worker since its start): "
                + "  ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(self.holds.items()))
            )
        lk = self.links
        if lk.get("links") or lk.get("unlinks") or lk.get("refused"):
            lines.append(
                f"identity links (this worker since its start): {lk.get('links', 0):,} linked, "
                f"{lk.get('unlinks', 0):,} unlinked, {lk.get('refused', 0):,} refused "
                f"(dead-letter); {lk.get('known', 0):,} known"
            )
        for c in self.campaigns:
            if c.get("state") == "killed":
                lines.append(f"campaign {c['campaign']} KILLED by {c.get('by')}: {c.get('reason')}")
            else:
                lines.append(
                    f"campaign {c['campaign']} TRIPPED ({c.get('kind')}): {c.get('why')}; "
                    f"{c.get('held', 0):,} held (release or kill it: trigger-sanity campaign "
                    f"show {c['campaign']})"
                )
        t = self.transactions
        if t is not None:
            lines.append(
                f"transactions (this worker since its start): committed {t['committed']:,}  "
                f"aborted {t['aborted']:,}  fenced {t['fenced']:,}  open now {t['open']}"
            )
        for title, counts in (
            ("by rule", self.rules),
            ("by trigger", self.triggers),
            ("by channel", self.channels),
        ):
            if counts:
                lines.append(
                    f"{title + ':':<12} " + "  ".join(f"{k} {v:,}" for k, v in counts.most_common())
                )
        if self.buckets:
            n = max(1, -(-(self.until_ms - self.since_ms) // self.interval_ms))
            width = max(len(r) for r in self.buckets)
            heads = [iso(self.since_ms + i * self.interval_ms)[11:16] for i in range(n)]
            lines.append(f"suppressions and rewrites per rule, per {self.interval_ms // 60_000}m:")
            lines.append(f"  {'':<{width}} " + " ".join(f"{h:>5}" for h in heads))
            for rule, b in sorted(self.buckets.items()):
                cells = " ".join(f"{b.get(i, 0):>5}" for i in range(n))
                lines.append(f"  {rule:<{width}} {cells}")
        return "\n".join(lines)


def collect(settings: Settings, since_ms: int, until_ms: int, interval_ms: int) -> DecisionStats:
    stats = DecisionStats(since_ms, until_ms, interval_ms)
    for role, rec in consume(settings, ROLES, since_ms=since_ms, until_ms=until_ms):
        stats.add(role, rec.value, rec.key, rec.timestamp)
    return stats
