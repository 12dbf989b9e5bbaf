"""Bad input is data: every kind of broken record becomes a clear dead-letter error."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from streams.contract import decode as codec
from streams.contract import render
from streams.core.candidate import Candidate
from streams.core.clock import to_ms
from streams.core.policy import DEFAULT_POLICY
from tests.helpers import cart, msg, purchase

GOOD_PURCHASE = orjson.dumps(purchase("10:00")["value"])
LATER = 1_800_000_000_000  # a record time (2027) after every event time used here

BAD: list[tuple[str, str, bytes | None, str]] = [
    ("not_json", "purchases", b"{nope", "not valid JSON at byte 1"),
    ("json_array", "purchases", b"[1,2]", "Input should be an object"),
    ("null_value", "purchases", None, "no value (null)"),
    ("empty_bytes", "sessions", b"", "not valid JSON at byte 0"),
    (
        "missing_sku",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "items": [{"quantity": 1}]}),
        "items.0.sku: Field required",
    ),
    (
        "wrong_type_quantity",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "items": [{"sku": "A", "quantity": "1"}]}),
        "items.0.quantity: Input should be a valid integer",
    ),
    (
        "naive_timestamp",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "occurred_at": "2026-11-20T10:00:00"}),
        "occurred_at: Input should have timezone info",
    ),
    (
        "unknown_session_kind",
        "sessions",
        orjson.dumps(
            {
                "event_id": "s",
                "customer_id": "c",
                "occurred_at": "2026-11-20T10:00:00Z",
                "session_id": "x",
                "kind": "paused",
            }
        ),
        "kind: Input should be 'started' or 'ended'",
    ),
    (
        "unknown_trigger",
        "outbound",
        orjson.dumps({**msg("m", "promotion", "10:00")["value"], "trigger": "birthday"}),
        "trigger: Input should be",
    ),
    (
        "unknown_channel",
        "consents",
        orjson.dumps(
            {
                "event_id": "k",
                "customer_id": "c",
                "occurred_at": "2026-11-20T10:00:00Z",
                "channel": "fax",
                "status": "withdrawn",
            }
        ),
        "channel: Input should be",
    ),
    (
        "empty_customer_id",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "customer_id": ""}),
        "customer_id: String should have at least 1",
    ),
    (
        "null_customer_id",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "customer_id": None}),
        "customer_id: Input should be a valid string",
    ),
    (
        "huge_id",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "order_id": "o" * 10_000}),
        "order_id: String should have at most",
    ),
    (
        "too_many_items",
        "purchases",
        orjson.dumps({**purchase("10:00")["value"], "items": [{"sku": "A"}] * 501}),
        "items: List should have at most",
    ),
    (
        "cart_without_updated_at",
        "outbound",
        orjson.dumps({**cart("m", "10:00", "09:59")["value"], "context": {"cart_id": "c"}}),
        "context.cart_updated_at: required for trigger abandoned_cart",
    ),
    (
        "recommendation_without_skus",
        "outbound",
        orjson.dumps(msg("m", "product_recommendation", "10:00")["value"]),
        "context.skus: required for trigger product_recommendation",
    ),
    (
        "review_without_order",
        "outbound",
        orjson.dumps(msg("m", "review_request", "10:00")["value"]),
        "context.order_id: required for trigger",
    ),
    ("invalid_utf8", "purchases", b'{"event_id": "\xff"}', "not valid UTF-8 at byte 14"),
]


@pytest.mark.parametrize(
    ("topic", "raw", "error"), [(t, r, e) for _n, t, r, e in BAD], ids=[n for n, *_ in BAD]
)
def test_bad_input_is_unreadable_with_clear_error(
    topic: str, raw: bytes | None, error: str
) -> None:
    got = codec.decode(topic, raw, LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Unreadable)
    assert error in got.error


def test_oversized_record_rejected_before_parsing() -> None:
    raw = b'{"x": "' + b"a" * 300_000 + b'"}'
    got = codec.decode("purchases", raw, LATER, 0, DEFAULT_POLICY, max_bytes=256 * 1024)
    assert isinstance(got, codec.Unreadable) and "over the limit" in got.error


def test_good_record_parses_to_fact_with_extra_fields_tolerated() -> None:
    raw = orjson.dumps({**orjson.loads(GOOD_PURCHASE), "loyalty_tier": "gold"})
    got = codec.decode("purchases", raw, LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Parsed) and got.customer_id == "c-42"


def test_candidate_deadline_uses_settle_delay() -> None:
    got = codec.decode(
        "outbound", orjson.dumps(cart("m", "10:00", "09:59")["value"]), LATER, 7, DEFAULT_POLICY
    )
    assert isinstance(got, codec.Parsed) and isinstance(got.fact, Candidate)
    assert got.fact.deadline - got.fact.created_at == 5 * 60_000
    assert (got.fact.record_time, got.fact.received_wall) == (LATER, 7)


REC_10_00 = to_ms(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("scenario", "occurred", "readable"),
    [
        ("clock_in_year_9999", "9999-12-31T23:59:59Z", False),
        ("clock_two_hours_fast", "2026-11-20T12:00:00Z", False),
        ("clock_59_minutes_fast_is_tolerated", "2026-11-20T10:59:00Z", True),
        ("event_far_in_the_past_is_fine", "2020-01-01T00:00:00Z", True),
    ],
)
def test_event_time_beyond_max_clock_skew_is_unreadable(
    scenario: str, occurred: str, readable: bool
) -> None:
    raw = orjson.dumps({**purchase("10:00")["value"], "occurred_at": occurred})
    got = codec.decode("purchases", raw, REC_10_00, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Parsed) is readable, got
    if not readable:
        assert isinstance(got, codec.Unreadable)
        assert "after the record's timestamp 2026-11-20T10:00:00Z" in got.error
        assert "max_clock_skew 1h" in got.error


def test_payload_with_an_integer_beyond_64_bits_is_readable() -> None:
    value = orjson.dumps(msg("m", "promotion", "10:00")["value"]).replace(
        b'"payload":{', b'"payload":{"n":123456789012345678901234567890,'
    )
    got = codec.decode("outbound", value, LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Parsed) and isinstance(got.fact, Candidate)
    assert "123456789012345678901234567890" in got.fact.raw


def test_dead_letter_record_text_and_binary() -> None:
    rec = orjson.loads(render.dead_letter("purchases", 3, 1234, b"c-42", b"{bad", "boom", 0))
    assert rec == {
        "topic": "purchases",
        "partition": 3,
        "offset": 1234,
        "key": "c-42",
        "value": "{bad",
        "value_encoding": "utf-8",
        "error": "boom",
        "received_at": "1970-01-01T00:00:00Z",
    }
    rec = orjson.loads(render.dead_letter("purchases", 0, 1, None, b"\xff\xfe", "binary", 0))
    assert rec["value_encoding"] == "base64" and base64.b64decode(rec["value"]) == b"\xff\xfe"
    assert rec["key"] is None


def test_dead_letter_truncates_huge_values() -> None:
    rec = orjson.loads(render.dead_letter("purchases", 0, 1, b"k", b"a" * 200_000, "too big", 0))
    assert rec["value_truncated"] is True and rec["value_size"] == 200_000
    assert len(rec["value"]) == render.MAX_DEAD_LETTER_VALUE
