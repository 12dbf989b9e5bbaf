"""What ``inspect`` shows an operator: times, filters, the table, JSON lines."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from streams.errors import UsageError
from streams.ops.inspect import Filters, Row, parse_when, row_of, table_header, table_line

NOW = int(datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - 15 * 60_000),
        ("2h", NOW - 2 * 3_600_000),
        ("3d", NOW - 3 * 86_400_000),
        ("90s", NOW - 90_000),
        ("2026-11-22T10:00:00Z", NOW - 2 * 3_600_000),
        ("2026-11-22T11:00:00+01:00", NOW - 2 * 3_600_000),
    ],
)
def test_since_and_until_take_a_duration_ago_or_a_time(text: str, expected: int) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [("yesterday", "neither a duration"), ("2026-11-22T10:00:00", "UTC offset"), ("5y", "neither")],
)
def test_a_time_that_cannot_mean_anything_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_when(text, NOW)


SUPPRESSED = orjson.dumps(
    {
        "message": {"message_id": "m-1", "customer_id": "c-42", "trigger": "abandoned_cart",
                    "channel": "email"},
        "rule": "cart_already_purchased",
        "reason": "order o-9 was placed at 10:05, after the cart was last updated at 09:59",
        "evidence": [],
        "decided_at": "2026-11-22T11:59:00Z",
        "policy": "default-1",
    }
)  # fmt: skip
CAMPAIGNED = orjson.dumps(
    {"message": {"message_id": "m-3", "customer_id": "c-1", "trigger": "promotion",
                 "channel": "email", "campaign_id": "black-friday",
                 "payload": {"template": "bf-1"}},
     "rule": "campaign_killed", "reason": "killed", "evidence": []}
)  # fmt: skip

REWRITE = orjson.dumps(
    {"message_id": "m-2", "customer_id": "c-7", "trigger": "product_recommendation",
     "channel": "push", "sanity": {"action": "rewrite", "rule": "recommends_recent_purchase",
                                   "removed_skus": ["SKU-1"]}}
)  # fmt: skip


@pytest.mark.parametrize(
    ("role", "value", "filters", "shown"),
    [
        ("suppressed", SUPPRESSED, Filters(), True),
        ("suppressed", SUPPRESSED, Filters(rule="cart_already_purchased"), True),
        ("suppressed", SUPPRESSED, Filters(rule="frequency_cap"), False),
        ("suppressed", SUPPRESSED, Filters(trigger="abandoned_cart", channel="email"), True),
        ("suppressed", SUPPRESSED, Filters(channel="sms"), False),
        ("suppressed", SUPPRESSED, Filters(customer="c-41"), False),
        ("send_queue", REWRITE, Filters(rule="recommends_recent_purchase"), True),
        ("send_queue", REWRITE, Filters(campaign="product_recommendation"), True),
        ("send_queue", REWRITE, Filters(campaign="recs"), False),
        ("suppressed", CAMPAIGNED, Filters(campaign="black-friday"), True),
        ("suppressed", CAMPAIGNED, Filters(campaign="promotion:bf-1"), False),
        ("suppressed", SUPPRESSED, Filters(campaign="abandoned_cart"), True),
        ("send_queue", REWRITE, Filters(rule="rewrite"), False),
        ("send_queue", b"not json", Filters(), True),
        ("send_queue", b"not json", Filters(rule="x"), False),
    ],
)
def test_filters_pick_records_by_rule_trigger_channel_and_customer(
    role: str, value: bytes, filters: Filters, shown: bool
) -> None:
    assert filters(row_of(role, value, b"c-42", NOW)) is shown


def test_a_table_line_fits_the_terminal_and_keeps_the_start_of_the_reason() -> None:
    row = row_of("suppressed", SUPPRESSED, b"c-42", NOW - 3 * 60_000)
    assert isinstance(row, Row)
    line = table_line(row, NOW, 120)
    assert line.startswith("3m ")
    assert "cart_already_purchased" in line and "c-42" in line and "m-1" in line
    assert len(line) <= 120 and line.endswith("…") and "order o-9 was" in line
    wide = table_line(row, NOW, 300)
    assert wide.endswith("after the cart was last updated at 09:59")
    assert table_header(300).split()[:3] == ["AGE", "RULE", "/"]
