"""The contract's models: strict where it matters, unknown fields kept, JSON Schema current."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    DeadLetter,
    LateEvidence,
    OutboundMessage,
    Purchase,
    Sanity,
    SuppressedMessage,
)
from schemas.export import JSON_DIR, rendered
from tests.helpers import cart, purchase


def test_exported_json_schemas_are_up_to_date() -> None:
    for name, data in rendered().items():
        path = JSON_DIR / name
        assert path.exists(), f"missing {path}: run `make schemas`"
        assert path.read_bytes() == data, f"{path} is out of date: run `make schemas`"


def test_contract_examples_validate() -> None:
    Purchase.model_validate_json(orjson.dumps(purchase("10:05")["value"]))
    m = OutboundMessage.model_validate_json(orjson.dumps(cart("m-1", "10:00", "09:59")["value"]))
    assert m.context.skus == ["SKU-1"] and m.payload == {"template": "abandoned_cart-1"}


def test_unknown_fields_are_kept() -> None:
    raw = {**cart("m-1", "10:00", "09:59")["value"], "campaign": {"id": 7}}
    m = OutboundMessage.model_validate_json(orjson.dumps(raw))
    assert m.model_dump(mode="json")["campaign"] == {"id": 7}


def test_category_defaults_to_marketing() -> None:
    raw = dict(cart("m-1", "10:00", "09:59")["value"])
    del raw["category"]
    assert OutboundMessage.model_validate_json(orjson.dumps(raw)).category == "marketing"


@pytest.mark.parametrize("field", ["event_id", "customer_id", "occurred_at", "order_id"])
def test_required_fields(field: str) -> None:
    raw = dict(purchase("10:05")["value"])
    del raw[field]
    with pytest.raises(ValidationError, match=field):
        Purchase.model_validate_json(orjson.dumps(raw))


def _strictly(model: type[BaseModel], raw: bytes) -> dict[str, Any]:
    """Validate what the worker wrote, and fail on any field the model does not declare:
    the exported JSON Schema is what consumers in other languages code against."""
    model.model_validate_json(raw)
    data: dict[str, Any] = orjson.loads(raw)
    undeclared = set(data) - set(model.model_fields)
    assert not undeclared, f"{model.__name__} lacks fields the worker writes: {undeclared}"
    return data


def _worker_outputs() -> dict[str, list[bytes]]:
    """Feed the router a history that yields every kind of output record."""
    from streams.core.engine import Engine
    from streams.core.policy import policy_from_mapping
    from streams.core.store import MemoryStore
    from streams.core.vocabulary import INPUT_KINDS
    from streams.processing.processor import Processor
    from tests.helpers import consent, msg, rec_msg, ret, session

    policy = policy_from_mapping({"rules": {"frequency_cap": {"mode": "monitor", "limit": 0}}})
    r = Processor(Engine(policy, MemoryStore()), {k: k for k in INPUT_KINDS}, lambda _t: 1)
    for k in INPUT_KINDS:
        r.engine.clock(0).set_idle(k, True)
    history = [
        purchase("2026-11-01T10:00:00Z", ["A", "B"], order="o-1"),
        ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
        rec_msg("m-rw", "10:00", ["A", "C"]),  # rewrite (and monitored frequency cap)
        consent("10:30", "withdrawn"),
        msg("m-sup", "promotion", "11:00"),  # suppressed (consent)
        cart("m-late", "12:00", "11:59", channel="sms"),
        session("13:00"),
    ]
    out: dict[str, list[bytes]] = {}
    t = 1_795_200_000_000  # 2026-11-20T18:40Z, after every event here (record time)
    for i, rec in enumerate(history):
        value = orjson.dumps(rec["value"])
        for o in r.on_record(rec["topic"], 0, i, t, b"c-42", value, t):
            out.setdefault(o.role, []).append(o.value or b"")
        for o in r.render(r.release(0, t)):
            out.setdefault(o.role, []).append(o.value or b"")
    late = purchase("12:02", ["X"], order="o-9")  # after the cart mail went out: late evidence
    for o in r.on_record("purchases", 0, 99, t, b"c-42", orjson.dumps(late["value"]), t):
        out.setdefault(o.role, []).append(o.value or b"")
    for o in r.on_record("purchases", 0, 100, t, b"c-42", b"{nope", t):
        out.setdefault(o.role, []).append(o.value or b"")
    return out


def test_output_models_declare_every_field_the_worker_writes() -> None:
    out = _worker_outputs()
    assert {k: len(v) for k, v in out.items()} == {
        "send_queue": 2,
        "suppressed": 1,
        "late_evidence": 1,
        "dead_letter": 1,
    }
    rewrite = next(orjson.loads(v) for v in out["send_queue"] if b"m-rw" in v)
    assert rewrite["sanity"]["action"] == "rewrite"
    for raw in out["send_queue"]:
        msg_data = orjson.loads(raw)
        _strictly(Sanity, orjson.dumps(msg_data["sanity"]))
        OutboundMessage.model_validate_json(raw)  # still a valid candidate message
    sup = _strictly(SuppressedMessage, out["suppressed"][0])
    assert sup["rule"] == "consent_withdrawn"
    _strictly(LateEvidence, out["late_evidence"][0])
    _strictly(DeadLetter, out["dead_letter"][0])
