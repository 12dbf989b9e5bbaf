"""The campaigns control topic: publish an ops command, read the history (CLI side).

Like the policy topic: compacted, one partition, keyed by a zero-padded sequence
number, so every command ever given stays, in order: the history an offline
replay needs (``replay --offline --campaign-history``) to decide as the workers
did. This module is what ``trigger-sanity campaign`` uses; the command line only
prints.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass, field

import orjson
from kafka import KafkaProducer

from streams.core.campaign_history import CampaignRecord
from streams.core.clock import iso
from streams.errors import PolicyError
from streams.hints import command
from streams.ops.control_topic import read_control
from streams.settings import Settings


def read_records(settings: Settings, timeout_s: float = 10.0) -> list[CampaignRecord]:
    """Every record on the campaigns topic, in sequence order."""
    hint = f"create it with `{command('topics', 'create')}` (run it again after an upgrade)"
    return read_control(settings, "campaigns", CampaignRecord, hint, timeout_s)


def publish(
    settings: Settings,
    campaign: str,
    what: str,
    effective_ms: int,
    reason: str,
    by: str | None = None,
    records: list[CampaignRecord] | None = None,
) -> CampaignRecord:
    """Append one command as the next sequence number."""
    if not reason.strip():
        raise PolicyError(f"campaign {what} needs --reason: who reads the history must know why")
    history = records if records is not None else read_records(settings)
    rec = CampaignRecord.model_validate(
        {
            "seq": (history[-1].seq + 1) if history else 1,
            "campaign": campaign,
            "command": what,
            "effective_at": iso(effective_ms),
            "effective_ms": effective_ms,
            "by": by or getpass.getuser(),
            "applied_at": iso(int(time.time() * 1000)),
            "reason": reason,
        }
    )
    producer = KafkaProducer(**settings.kafka_producer_kwargs())  # acks=all, idempotent
    try:
        producer.send(
            settings.topics["campaigns"],
            key=f"{rec.seq:012d}".encode(),
            value=orjson.dumps(rec.model_dump(mode="json")),
            partition=0,
        ).get(timeout=30)
    finally:
        producer.close()
    return rec


@dataclass
class CampaignView:
    """What ops know of one campaign from the control topic."""

    campaign: str
    state: str = "running"  # running | killed | released
    records: list[CampaignRecord] = field(default_factory=list)


def campaigns(records: list[CampaignRecord], now_ms: int) -> dict[str, CampaignView]:
    """Each campaign's state now, from its commands in force (effective at or before now)."""
    out: dict[str, CampaignView] = {}
    for rec in sorted(records, key=lambda r: (r.effective_ms, r.seq)):
        view = out.setdefault(rec.campaign, CampaignView(rec.campaign))
        view.records.append(rec)
        if rec.effective_ms <= now_ms:
            view.state = {"kill": "killed", "release": "released", "resume": "running"}[rec.command]
    return out
