"""``explain MESSAGE_ID``: everything the output topics say about one message.

Where it went (send queue, suppressed, dead letter), by which rule and policy
version, why, on what evidence, how long it was held, whether a later event
contradicted it (late evidence) and whether a person released it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.clock import iso
from streams.ops.release import Found, search
from streams.settings import Settings

ROLES = ("send_queue", "suppressed", "dead_letter", "late_evidence", "releases")


@dataclass
class Story:
    message_id: str
    records: list[Found] = field(default_factory=list)
    # not decided yet and held by a campaign trip (the worker's /held page)
    campaign_holds: list[dict[str, Any]] = field(default_factory=list)
    unasked: str = ""  # why the worker was not asked

    def of(self, role: str) -> list[Found]:
        return [f for f in self.records if f.role == role]

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "records": [
                {"role": f.role, "topic": f.topic, "partition": f.partition,
                 "offset": f.offset, "timestamp": iso(f.timestamp), "value": f.record}
                for f in self.records
            ],
            "campaign_holds": self.campaign_holds,
        }  # fmt: skip

    def render(self) -> str:
        out: list[str] = []
        for h in self.campaign_holds:
            out += [
                f"{self.message_id}: HELD by campaign {h.get('campaign')} ({h.get('state')}), "
                f"customer {h.get('customer_id')}",
                f"  held since {iso(int(h.get('held_since_ms', 0)))}; suppressed "
                f"(campaign_held_expired) at {iso(int(h.get('expires_ms', 0)))} unless ops act",
                f"  trip: {h.get('why')} (tripped by {h.get('message_id')})",
                f'  act: trigger-sanity campaign release {h.get("campaign")} --reason "..."  or  '
                f'trigger-sanity campaign kill {h.get("campaign")} --reason "..."',
            ]
        for f in self.of("suppressed"):
            r, m = f.record, f.record.get("message") or {}
            out += [
                f"{self.message_id}: SUPPRESSED by {r.get('rule')} (policy {r.get('policy')})",
                *_about(m),
                f"  decided: {r.get('decided_at')}",
                *_held(r, None),
                f"  reason: {r.get('reason')}",
                *_evidence(r.get("evidence") or []),
                *_monitored(r),
                f"  record: {f.topic}[{f.partition}]@{f.offset}",
            ]
        for f in self.of("send_queue"):
            s = f.record.get("sanity") or {}
            released = s.get("released")
            what = "RELEASED by hand" if released else str(s.get("action", "?")).upper()
            out += [f"{self.message_id}: {what} to the send queue (policy {s.get('policy')})"]
            out += _about(f.record)
            out += [f"  decided: {s.get('decided_at')}, held {s.get('held_ms')} ms"]
            out += _held(s, s.get("send_at"))
            if released:
                out.append(
                    f"  released by {released.get('by')} at {released.get('at')}, overriding "
                    f"{released.get('rule')}: {released.get('reason')}"
                )
            if s.get("action") == "rewrite":
                out.append(f"  removed {', '.join(s.get('removed_skus') or [])} ({s.get('rule')})")
                out.append(f"  reason: {s.get('reason')}")
                out += _evidence(s.get("evidence") or [])
            out += _monitored(s)
            out.append(f"  record: {f.topic}[{f.partition}]@{f.offset}")
        for f in self.of("dead_letter"):
            r = f.record
            out += [
                f"{self.message_id}: DEAD-LETTERED (not decided)",
                f"  error: {r.get('error')}",
                f"  input: {r.get('topic')}[{r.get('partition')}]@{r.get('offset')}",
                f"  record: {f.topic}[{f.partition}]@{f.offset}",
            ]
        late = self.of("late_evidence")
        if late:
            out.append("  late evidence (read after the decision; it would have changed it):")
            for f in late:
                ev = f.record.get("event") or {}
                out.append(
                    f"    {ev.get('topic')} {ev.get('event_id')} at {ev.get('occurred_at')}: "
                    f"{f.record.get('rule')}, {f.record.get('late_by_ms')} ms after the deadline"
                )
        for f in self.of("releases"):
            r = f.record
            out.append(
                f"  release on record: by {r.get('released_by')} at {r.get('released_at')}: "
                f"{r.get('note')}"
            )
        return "\n".join(out)


def _held(block: dict[str, Any], until: str | None) -> list[str]:
    """Why a message waited past its own deadline, and until when: quiet hours (in which
    zone, from where) or a cap."""
    why = block.get("held_for")
    if not why:
        return []
    tz = block.get("timezone") or {}
    where = (
        f" in {tz.get('zone')} (from {tz.get('source')}, tzdata {tz.get('tzdata')})" if tz else ""
    )
    what = "quiet hours" if why == "quiet_hours" else "a cap with no room" if why == "cap" else why
    when = f" until {until}" if until else ""
    return [f"  held for {what}{where}{when}"]


def _about(m: dict[str, Any]) -> list[str]:
    return [
        f"  customer {m.get('customer_id')}, trigger {m.get('trigger')}, channel "
        f"{m.get('channel')}, created {m.get('created_at')}"
    ]


def _evidence(evidence: list[dict[str, Any]]) -> list[str]:
    if not evidence:
        return []
    return ["  evidence:"] + [
        f"    {e.get('topic')} {e.get('event_id')} at {e.get('occurred_at')}" for e in evidence
    ]


def _monitored(r: dict[str, Any]) -> list[str]:
    mon = r.get("monitored") or []
    return [f"  rules in monitor mode that would have fired: {', '.join(mon)}"] if mon else []


def explain(
    settings: Settings, message_id: str, customer: str | None, since_ms: int | None
) -> Story:
    return Story(message_id, list(search(settings, ROLES, message_id, customer, since_ms)))
