"""Every output record the contract promises, rendered in one place: send-queue,
suppressed, late-evidence, dead-letter, a hand release, and the offline replay's
decision and late-evidence lines.

The message is passed through as received, byte for byte (unknown fields,
key order, numbers of any size): only the ``sanity`` block is spliced in
(``rawjson``). For a rewrite the stripped SKUs are removed from
``context.skus`` and listed in ``sanity.removed_skus``.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from streams.contract import rawjson
from streams.core.clock import iso
from streams.core.outcomes import Decided, LateFinding, Output, Refused, Rendered
from streams.core.quiet_hours import TZDATA
from streams.core.rules import evidence_json

MAX_DEAD_LETTER_VALUE = 64 * 1024
"""Bytes of an unreadable value kept in its dead letter (the rest is cut, and says so)."""


def records(o: Output, outbound_topic: str) -> Rendered:
    """One engine output as the records to write: (output role, key, value).
    ``outbound_topic``: the name a failed candidate's dead letter gives as its topic
    when it has no source coordinates."""
    if isinstance(o, Decided):
        key = o.candidate.customer_id.encode("utf-8")
        if o.decision.action == "suppress":
            return (("suppressed", key, suppressed_value(o, o.policy)),)
        return (("send_queue", key, send_value(o, o.policy)),)
    if isinstance(o, LateFinding):
        return (("late_evidence", o.customer_id.encode("utf-8"), late_value(o, o.policy)),)
    if isinstance(o, Refused):
        k = o.link
        key = k.alias.encode("utf-8")
        where: tuple[str, int | None, int | None] = k.origin or ("identities", None, None)
        value = dead_letter(*where, key, k.raw.encode(), o.error, o.decided_wall)
        return (("dead_letter", key, value),)
    c = o.candidate
    key = c.customer_id.encode("utf-8")
    topic, partition, offset = outbound_topic, None, None
    if o.source is not None:
        stream, offset = o.source
        topic, _, part = stream.rpartition(":")
        partition = int(part)
    value = dead_letter(topic, partition, offset, key, c.raw.encode(), o.error, c.received_wall)
    return (("dead_letter", key, value),)


def with_sanity(message: bytes, sanity: dict[str, Any]) -> bytes:
    """A send-queue record: the message as received plus its ``sanity`` block."""
    return rawjson.with_member(message, "sanity", orjson.dumps(sanity))


def send_value(d: Decided, policy_version: str) -> bytes:
    msg = d.candidate.raw.encode("utf-8")
    dec = d.decision
    if dec.action == "rewrite" and dec.skus is not None:
        msg = rawjson.replace_in(msg, ("context", "skus"), orjson.dumps(list(dec.skus)))
    sanity: dict[str, Any] = {
        "action": dec.action,
        "decided_at": iso(d.decided_wall),
        "policy": policy_version,
        "removed_skus": list(dec.removed_skus),
        "held_ms": max(0, d.decided_wall - d.candidate.received_wall),
        "send_at": iso(d.candidate.deadline),
    }
    _held_for(sanity, d)
    if dec.action == "rewrite":
        sanity["rule"] = dec.rule
        sanity["reason"] = dec.reason
        sanity["evidence"] = evidence_json(dec.evidence)
    if dec.monitored:
        sanity["monitored"] = list(dec.monitored)
    return with_sanity(msg, sanity)


def _held_for(block: dict[str, Any], d: Decided) -> None:
    """What a held candidate's decision adds: why it was held, and for quiet hours the
    zone, where that came from, and the time zone database it was read with."""
    c = d.candidate
    if not c.held_for:
        return
    block["held_for"] = c.held_for
    if c.zone_used:
        name, _, source = c.zone_used.partition("|")
        block["timezone"] = {"zone": name, "source": source, "tzdata": TZDATA}


def suppressed_value(d: Decided, policy_version: str) -> bytes:
    dec = d.decision
    record: dict[str, Any] = {
        "rule": dec.rule,
        "reason": dec.reason,
        "evidence": evidence_json(dec.evidence),
        "decided_at": iso(d.decided_wall),
        "policy": policy_version,
    }
    _held_for(record, d)
    if dec.monitored:
        record["monitored"] = list(dec.monitored)
    # {"message": <the candidate as received>, "rule": ...}: the message spliced in as is.
    rest = orjson.dumps(record)
    return b'{"message":' + d.candidate.raw.encode("utf-8").strip() + b"," + rest[1:]


def late_value(f: LateFinding, policy_version: str) -> bytes:
    return orjson.dumps(
        {
            "message_id": f.sent.message_id,
            "customer_id": f.customer_id,
            "trigger": f.sent.trigger,
            "rule": f.rule,
            "reason": f.reason,
            "event": evidence_json([f.event])[0],
            "deadline": iso(f.sent.deadline),
            "decided": f.sent.action,
            "would_have": f.would,
            "late_by_ms": f.late_by_ms,
            "behind_ms": f.behind_ms,
            "policy": policy_version,
        }
    )


def offline_line(d: Decided) -> dict[str, Any]:
    """One line of ``replay --offline --out``: the contract's decision record."""
    dec = d.decision
    return {
        "message_id": d.candidate.message_id,
        "customer_id": d.candidate.customer_id,
        "action": dec.action,
        "rule": dec.rule,
        "removed_skus": list(dec.removed_skus),
        "send_at": iso(d.candidate.deadline),
        **({"held_for": d.candidate.held_for} if d.candidate.held_for else {}),
    }


def late_line(o: LateFinding) -> dict[str, Any]:
    """One line of ``replay --offline --late-out``."""
    return {
        "message_id": o.sent.message_id,
        "customer_id": o.customer_id,
        "rule": o.rule,
        "event_id": o.event[1],
        "topic": o.event[0],
        "decided": o.sent.action,
        "would_have": o.would,
        "late_by_ms": o.late_by_ms,
        "behind_ms": o.behind_ms,
    }


def released_value(
    message: bytes, policy: str | None, rule: str | None, by: str, reason: str, now_ms: int
) -> bytes:
    """A hand release: the message exactly as automation wrote it, plus a ``sanity`` block
    that says it was sent because a person released it, overriding which rule."""
    sanity: dict[str, Any] = {
        "action": "send",
        "decided_at": iso(now_ms),
        "policy": policy,
        "removed_skus": [],
        "held_ms": 0,
        "released": {"by": by, "at": iso(now_ms), "reason": reason, "rule": rule},
    }
    return with_sanity(message, sanity)


def text_or_base64(data: bytes | None, limit: int = MAX_DEAD_LETTER_VALUE) -> dict[str, Any]:
    """Fields describing raw bytes for a dead-letter record (truncated past ``limit``)."""
    if data is None:
        return {"value": "", "value_encoding": "utf-8", "value_null": True}
    out: dict[str, Any] = {}
    if len(data) > limit:
        out["value_truncated"] = True
        out["value_size"] = len(data)
        data = data[:limit]
    try:
        out["value"] = data.decode("utf-8")
        out["value_encoding"] = "utf-8"
    except UnicodeDecodeError:
        out["value"] = base64.b64encode(data).decode("ascii")
        out["value_encoding"] = "base64"
    return out


def key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(key).decode("ascii")


def dead_letter(
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    error: str,
    received_wall: int,
) -> bytes:
    record: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key_text(key),
        **text_or_base64(value),
        "error": error,
        "received_at": iso(received_wall),
    }
    return orjson.dumps(record)
