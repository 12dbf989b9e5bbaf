"""Builders for contract-shaped records, so tests read like the contract."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.contract import decode, render
from streams.contract.history import HistoryRecord, parse_line, write_history
from streams.core.engine import Engine
from streams.core.outbox import Outbox
from streams.core.outcomes import Output
from streams.core.policy import DEFAULT_POLICY, Policy
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.offline.replay import ReplaySummary, replay_offline
from streams.processing.processor import Processor

DAY = "2026-11-20"

ROOT = Path(__file__).resolve().parents[1]
"""The project's root."""
DATA = ROOT / "tests" / "data"
"""Files the tests read: the contract history, a state in an old changelog format."""


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


def iso_s(t: datetime) -> str:
    """RFC 3339 UTC, whole seconds."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def hot_customers(n: int, days: int, seed: int, disorder: int = 0) -> list[dict[str, Any]]:
    """Customers active most days for ``days``, with quiet spells longer than the TTL
    (new epochs), late records, repeated message ids and consent flips. ``disorder``:
    a fifth of the events happened up to that many days before they were read (a fact
    older than everything kept, after the state was pruned)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    recs: list[tuple[datetime, int, dict[str, Any]]] = []
    k = 0
    for c in range(n):
        cid = f"hot-{c}"
        day = 0
        while day < days:
            if rng.random() < 0.03:
                day += rng.randint(41, 60)  # longer than customer_ttl: a new epoch
                continue
            t = start + timedelta(days=day, hours=rng.randint(6, 20), minutes=rng.randint(0, 59))
            order = f"o-{c}-{day}"
            sku = f"SKU-{rng.randint(1, 6)}"
            late = t - timedelta(hours=rng.choice((0, 0, 0, 2)))
            read = t  # the record's place in the file
            if disorder and rng.random() < 0.2:
                t = late = t - timedelta(hours=rng.randint(1, 24 * disorder))
            roll = rng.random()
            v: dict[str, Any]
            if roll < 0.3:
                v = {"event_id": f"p{k}", "customer_id": cid, "occurred_at": iso_s(late),
                     "order_id": order, "items": [{"sku": sku, "quantity": 1}]}  # fmt: skip
                recs.append((read, k, {"topic": "purchases", "value": v, "timestamp": iso_s(read)}))
            elif roll < 0.4:
                v = {"event_id": f"r{k}", "customer_id": cid, "occurred_at": iso_s(t),
                     "order_id": f"o-{c}-{max(0, day - rng.randint(0, 5))}",
                     "items": [{"sku": sku, "quantity": 1}]}  # fmt: skip
                recs.append((read, k, {"topic": "returns", "value": v, "timestamp": iso_s(read)}))
            elif roll < 0.6:
                v = {"event_id": f"s{k}", "customer_id": cid, "occurred_at": iso_s(t),
                     "session_id": f"x{k}", "kind": "started"}  # fmt: skip
                recs.append((read, k, {"topic": "sessions", "value": v, "timestamp": iso_s(read)}))
            elif roll < 0.65:
                v = {"event_id": f"k{k}", "customer_id": cid, "occurred_at": iso_s(t),
                     "channel": rng.choice(("email", "sms")),
                     "status": rng.choice(("granted", "withdrawn"))}  # fmt: skip
                recs.append((read, k, {"topic": "consents", "value": v, "timestamp": iso_s(read)}))
            else:
                trigger = rng.choice(
                    ("promotion", "welcome", "welcome_back", "win_back", "review_request",
                     "product_recommendation")
                )  # fmt: skip
                ctx: dict[str, Any] = {}
                if trigger == "review_request":
                    ctx["order_id"] = f"o-{c}-{max(0, day - rng.randint(0, 40))}"
                if trigger == "product_recommendation":
                    ctx["skus"] = [f"SKU-{rng.randint(1, 6)}", f"SKU-{rng.randint(1, 6)}"]
                mid = f"m{k}" if rng.random() < 0.9 else f"m{max(0, k - 7)}"
                v = {"message_id": mid, "customer_id": cid, "created_at": iso_s(t),
                     "trigger": trigger, "channel": rng.choice(("email", "sms")),
                     "category": "marketing", "context": ctx,
                     "payload": {"n": rng.randint(0, 3)}}  # fmt: skip
                recs.append((read, k, {"topic": "outbound", "value": v, "timestamp": iso_s(read)}))
            k += 1
            day += rng.choice((0, 0, 1, 1, 2))
    recs.sort(key=lambda r: (r[0], r[1]))
    return [r for _t, _k, r in recs]


def feed(engine: Engine, rec: dict[str, Any], wall: int = 0, partition: int = 0) -> list[Output]:
    """One contract-shaped record straight into an engine (no processor): decoded as the
    worker decodes it, its record time from the history line (default its event time)."""
    hr = parse_line(1, orjson.dumps(rec))
    assert isinstance(hr, HistoryRecord), hr
    record_ms = hr.record_ms if hr.record_ms is not None else hr.event_ms
    assert record_ms is not None
    parsed = decode.decode(rec["topic"], orjson.dumps(rec["value"]), record_ms, wall, engine.policy)
    assert isinstance(parsed, decode.Parsed), parsed
    return engine.ingest(
        partition, parsed.kind, parsed.customer_id, parsed.event_ms, parsed.fact, record_ms
    )


def worker_outbox() -> Outbox:
    """An outbox rendering as the worker does."""
    return Outbox(lambda o: render.records(o, "outbound"))


def engine_with_outbox() -> tuple[Engine, Processor]:
    """An engine keeping its outputs in outboxes, as the worker's does, on one partition
    whose streams are all idle (candidates are decided at their deadline), and its
    processor."""
    engine = Engine(DEFAULT_POLICY, MemoryStore(), outbox=worker_outbox())
    processor = Processor(engine, {k: k for k in INPUT_KINDS}, lambda _t: 1)
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, True)
    return engine, processor
