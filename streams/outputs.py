"""Decisions -> the records the contract promises (send-queue, suppressed, ...).

The message is passed through as received (unknown fields included); only
the ``sanity`` block is added. For a rewrite the stripped SKUs are removed
from ``context.skus`` and listed in ``sanity.removed_skus``.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.clock import iso
from streams.engine import Decided, LateFinding
from streams.rules import evidence_json


def _message(d: Decided) -> dict[str, Any]:
    msg: dict[str, Any] = orjson.loads(d.candidate.raw)
    return msg


def send_value(d: Decided, policy_version: str) -> bytes:
    msg = _message(d)
    dec = d.decision
    if dec.action == "rewrite":
        ctx = msg.get("context")
        if isinstance(ctx, dict) and dec.skus is not None:
            ctx["skus"] = list(dec.skus)
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
    msg["sanity"] = sanity
    return orjson.dumps(msg)


def suppressed_value(d: Decided, policy_version: str) -> bytes:
    dec = d.decision
    record: dict[str, Any] = {
        "message": _message(d),
        "rule": dec.rule,
        "reason": dec.reason,
        "evidence": evidence_json(dec.evidence),
        "decided_at": iso(d.decided_wall),
        "policy": policy_version,
    }
    if dec.monitored:
        record["monitored"] = list(dec.monitored)
    return orjson.dumps(record)


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
            "late_by_ms": f.late_by_ms,
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
