"""The policy topic: publish a version, read the whole history (CLI side, kafka-python).

The topic is compacted with one partition, keyed by a zero-padded sequence
number, so it keeps every version ever applied, in order, for good: the
history a replay needs to reproduce past decisions. The worker reads it with
its own asyncio consumer (``streams.worker.policy_feed``); this module is what the
``policy apply / history / rollback`` commands use, the rollback rule included, so
that the command line only prints.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from datetime import datetime

import orjson
from kafka import KafkaProducer

from streams.core.clock import iso, to_ms
from streams.core.policy import Policy, parse_duration_ms
from streams.core.policy_history import PolicyHistory, PolicyRecord, as_mapping, check_live
from streams.errors import PolicyError
from streams.hints import command
from streams.ops.control_topic import read_control
from streams.settings import Settings

DEFAULT_LEAD = "60s"
"""How far ahead of now a version takes effect by default: time for every worker to read
it (they poll every ``policy_poll_interval``) before any candidate created after it."""


def read_records(settings: Settings, timeout_s: float = 10.0) -> list[PolicyRecord]:
    """Every record on the policy topic, in sequence order (compaction keeps them all)."""
    hint = f"create it with `{command('topics', 'create')}` (or `make topics`)"
    return read_control(settings, "policy", PolicyRecord, hint, timeout_s)


def effective_time(at: str | None, lead: str | None, now_ms: int) -> int:
    """``--at`` (RFC 3339, must be in the future) or now + ``--in`` (default 60s)."""
    if at is not None:
        try:
            dt = datetime.fromisoformat(at)
        except ValueError as exc:
            raise PolicyError(f"--at {at!r}: expected an RFC 3339 time like "
                              "2026-11-22T15:00:00Z") from exc  # fmt: skip
        if dt.tzinfo is None:
            raise PolicyError(f"--at {at!r}: give a UTC offset, e.g. {at}Z")
        ms = to_ms(dt)
        if ms < now_ms:
            raise PolicyError(
                f"--at {at} is in the past: workers have already decided messages created "
                "since then, and a replay must decide them the same way; pick a future time"
            )
        return ms
    try:
        return now_ms + parse_duration_ms(lead or DEFAULT_LEAD)
    except ValueError as exc:
        raise PolicyError(f"--in: {exc}") from exc


def publish(
    settings: Settings,
    policy: Policy,
    effective_ms: int,
    by: str | None = None,
    note: str | None = None,
    rollback_of: str | None = None,
    records: list[PolicyRecord] | None = None,
) -> PolicyRecord:
    """Validate ``policy`` against the base (the configured policy file) and the history,
    and append it as the next version."""
    from streams.core.policy import load_policy

    base = load_policy(settings.policy_file)
    check_live(base, policy)
    history = records if records is not None else read_records(settings)
    for old in history:
        if old.version == policy.version and old.policy != as_mapping(policy):
            raise PolicyError(
                f"version {policy.version} was applied before (seq {old.seq}, "
                f"{old.applied_at}) with different contents: give the new policy its own "
                "version string"
            )
    rec = PolicyRecord(
        seq=(history[-1].seq + 1) if history else 1,
        version=policy.version,
        effective_at=iso(effective_ms),
        effective_ms=effective_ms,
        applied_by=by or getpass.getuser(),
        applied_at=iso(int(time.time() * 1000)),
        note=note,
        rollback_of=rollback_of,
        policy=as_mapping(policy),
    )
    producer = KafkaProducer(**settings.kafka_producer_kwargs())  # acks=all, idempotent
    try:
        producer.send(
            settings.topics["policy"],
            key=f"{rec.seq:012d}".encode(),
            value=orjson.dumps(rec.model_dump(mode="json")),
            partition=0,
        ).get(timeout=30)
    finally:
        producer.close()
    return rec


def current_history(settings: Settings, records: list[PolicyRecord]) -> PolicyHistory:
    from streams.core.policy import load_policy

    hist = PolicyHistory(load_policy(settings.policy_file))
    for rec in records:
        hist.add(rec)
    return hist


class RollbackRefused(PolicyError):
    """There is nothing a rollback could restore: not a mistake in the input, so the
    command says so and exits 1 rather than 2."""


@dataclass(frozen=True, slots=True)
class RolledBack:
    undone: str  # the version rolled back from
    restored: Policy  # in force again from ``record.effective_at``
    record: PolicyRecord


def rollback(
    settings: Settings,
    at: str | None = None,
    lead: str | None = None,
    by: str | None = None,
    note: str | None = None,
) -> RolledBack:
    """Publish again what was in force just before the latest version took effect.

    Going by effective time, not by sequence, restores what candidates were actually
    decided by, even when versions were applied out of order or one was refused."""
    records = read_records(settings)
    if not records:
        raise RollbackRefused("nothing to roll back: no version was applied live")
    now = int(time.time() * 1000)
    latest = records[-1]
    before = current_history(settings, records).at(latest.effective_ms - 1)
    if before.version == latest.version:
        raise RollbackRefused(f"{latest.version} is already what was in force before")
    effective = effective_time(at, lead, now)
    rec = publish(
        settings, before, effective, by=by, note=note, rollback_of=latest.version, records=records
    )
    if rec.policy != as_mapping(before):
        # published already: say so, so nobody trusts seq N to be the old version
        raise PolicyError(
            f"rollback of {latest.version} published seq {rec.seq}, but its contents are not "
            f"{before.version}'s: check `{command('policy', 'history')}` and apply the "
            "intended policy file"
        )
    return RolledBack(latest.version, before, rec)
