"""Builders for contract-shaped records, so tests read like the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streams.history import write_history
from streams.policy import DEFAULT_POLICY, Policy
from streams.replay import ReplaySummary, replay_offline

DAY = "2026-11-20"


def at(hms: str, day: str = DAY) -> str:
    """``at("10:05")`` -> ``2026-11-20T10:05:00Z``; a full timestamp passes through."""
    if "T" in hms:
        return hms
    if hms.count(":") == 1:
        hms += ":00"
    return f"{day}T{hms}Z"


_n = {"n": 0}


def _eid(prefix: str) -> str:
    _n["n"] += 1
    return f"{prefix}-{_n['n']}"


def purchase(
    when: str,
    skus: list[str] | tuple[str, ...] = ("SKU-1",),
    cid: str = "c-42",
    order: str | None = None,
    qty: int = 1,
    eid: str | None = None,
) -> dict[str, Any]:
    return {
        "topic": "purchases",
        "value": {
            "event_id": eid or _eid("p"),
            "customer_id": cid,
            "occurred_at": at(when),
            "order_id": order or _eid("o"),
            "items": [{"sku": s, "quantity": qty, "unit_price": "19.99"} for s in skus],
            "currency": "EUR",
        },
    }


def ret(
    when: str, order: str, items: list[tuple[str, int]], cid: str = "c-42", eid: str | None = None
) -> dict[str, Any]:
    return {
        "topic": "returns",
        "value": {
            "event_id": eid or _eid("r"),
            "customer_id": cid,
            "occurred_at": at(when),
            "order_id": order,
            "items": [{"sku": s, "quantity": q} for s, q in items],
            "reason": "damaged",
        },
    }


def session(when: str, cid: str = "c-42", kind: str = "started") -> dict[str, Any]:
    return {
        "topic": "sessions",
        "value": {
            "event_id": _eid("s"),
            "customer_id": cid,
            "occurred_at": at(when),
            "session_id": _eid("sess"),
            "kind": kind,
        },
    }


def consent(when: str, status: str, channel: str = "email", cid: str = "c-42") -> dict[str, Any]:
    return {
        "topic": "consents",
        "value": {
            "event_id": _eid("k"),
            "customer_id": cid,
            "occurred_at": at(when),
            "channel": channel,
            "status": status,
        },
    }


def msg(
    mid: str,
    trigger: str,
    created: str,
    cid: str = "c-42",
    channel: str = "email",
    category: str = "marketing",
    context: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "topic": "outbound",
        "value": {
            "message_id": mid,
            "customer_id": cid,
            "created_at": at(created),
            "trigger": trigger,
            "channel": channel,
            "category": category,
            "context": context or {},
            "payload": payload if payload is not None else {"template": f"{trigger}-1"},
        },
    }
    if timestamp is not None:
        rec["timestamp"] = at(timestamp)
    return rec


def cart(mid: str, created: str, updated: str, cid: str = "c-42", **kw: Any) -> dict[str, Any]:
    return msg(
        mid,
        "abandoned_cart",
        created,
        cid=cid,
        context={"cart_id": "cart-3", "cart_updated_at": at(updated), "skus": ["SKU-1"]},
        **kw,
    )


def rec_msg(
    mid: str, created: str, skus: list[str], trigger: str = "product_recommendation", **kw: Any
) -> dict[str, Any]:
    return msg(mid, trigger, created, context={"skus": skus}, **kw)


def run(
    tmp_path: Path,
    records: list[dict[str, Any]],
    policy: Policy = DEFAULT_POLICY,
    name: str = "h.jsonl",
) -> tuple[dict[str, dict[str, Any]], ReplaySummary]:
    """Replay records offline; return decisions by message id (last one wins) and the summary."""
    path = tmp_path / name
    write_history(path, records)
    out_path = tmp_path / (name + ".out")
    with open(out_path, "wb") as out:
        summary = replay_offline(path, policy, out)
    decisions: dict[str, dict[str, Any]] = {}
    for line in out_path.read_bytes().splitlines():
        d = orjson.loads(line)
        decisions.setdefault(d["message_id"], d)
        decisions[d["message_id"] + "#last"] = d
    return decisions, summary


def decisions_list(
    tmp_path: Path, records: list[dict[str, Any]], policy: Policy = DEFAULT_POLICY
) -> list[dict[str, Any]]:
    path = tmp_path / "list.jsonl"
    write_history(path, records)
    out_path = tmp_path / "list.out"
    with open(out_path, "wb") as out:
        replay_offline(path, policy, out)
    return [orjson.loads(line) for line in out_path.read_bytes().splitlines()]
