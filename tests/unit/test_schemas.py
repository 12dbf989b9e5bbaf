"""The contract's models: strict where it matters, unknown fields kept, JSON Schema current."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from schemas import DeadLetter, OutboundMessage, Purchase, SuppressedMessage
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


def test_output_models_accept_what_the_worker_writes() -> None:
    from streams.codec import dead_letter

    DeadLetter.model_validate_json(dead_letter("purchases", 0, 1, b"k", b"x", "err", 0))
    SuppressedMessage.model_validate(
        {
            "message": {},
            "rule": "frequency_cap",
            "reason": "r",
            "evidence": [],
            "decided_at": "2026-11-20T10:00:00Z",
            "policy": "p",
        }
    )
