"""Decisions -> the records the contract promises (send-queue, suppressed, ...).

The message is passed through as received, byte for byte (unknown fields,
key order, numbers of any size): only the ``sanity`` block is spliced in
(``rawjson``). For a rewrite the stripped SKUs are removed from
``context.skus`` and listed in ``sanity.removed_skus``.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.contract import rawjson
from streams.core.clock import iso
from streams.core.engine import Decided, LateFinding
from streams.core.rules import evidence_json


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
    }
    if dec.action == "rewrite":
        sanity["rule"] = dec.rule
        sanity["reason"] = dec.reason
        sanity["evidence"] = evidence_json(dec.evidence)
    if dec.monitored:
        sanity["monitored"] = list(dec.monitored)
    return rawjson.with_member(msg, "sanity", orjson.dumps(sanity))


def suppressed_value(d: Decided, policy_version: str) -> bytes:
    dec = d.decision
    record: dict[str, Any] = {
        "rule": dec.rule,
        "reason": dec.reason,
        "evidence": evidence_json(dec.evidence),
        "decided_at": iso(d.decided_wall),
        "policy": policy_version,
    }
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
    }
