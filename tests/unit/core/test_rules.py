"""Every rule of the contract, table-driven: boundaries, ties, offsets, interplay.

Each case is a little history in contract form; it runs through the same
offline path as ``trigger-sanity replay --offline`` and the decision for
message ``m`` is compared with (action, rule, removed_skus).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    cart,
    consent,
    msg,
    purchase,
    rec_msg,
    ret,
    run,
    session,
)

Case = tuple[str, list[dict[str, Any]], tuple[str, str | None, list[str]]]

SEND: tuple[str, None, list[str]] = ("send", None, [])


def suppress(rule: str) -> tuple[str, str, list[str]]:
    return ("suppress", rule, [])


CASES: list[Case] = [
    # ---------------------------------------------------------------- duplicate_message
    (
        "duplicate_transactional_also_checked",
        [
            msg("m", "promotion", "09:59", category="transactional"),
            msg("m", "promotion", "10:00", category="transactional"),
        ],
        SEND,  # the first copy; the second is checked in test_duplicate_message_transactional
    ),
    # ---------------------------------------------------------------- consent_withdrawn
    (
        "consent_withdrawn_before_created",
        [consent("09:00", "withdrawn"), msg("m", "promotion", "10:00")],
        suppress("consent_withdrawn"),
    ),
    (
        "consent_withdrawn_exactly_at_deadline",
        [consent("10:00", "withdrawn"), msg("m", "promotion", "10:00")],
        suppress("consent_withdrawn"),
    ),
    (
        "consent_withdrawn_one_second_after_deadline",
        [msg("m", "promotion", "10:00"), consent("10:00:01", "withdrawn")],
        SEND,
    ),
    (
        "consent_withdrawn_within_cart_settle_counts",
        [cart("m", "10:00", "09:59"), consent("10:03", "withdrawn")],
        suppress("consent_withdrawn"),
    ),
    (
        "consent_withdrawn_then_granted_again",
        [
            consent("08:00", "withdrawn"),
            consent("09:00", "granted"),
            msg("m", "promotion", "10:00"),
        ],
        SEND,
    ),
    (
        "consent_withdrawn_on_other_channel",
        [consent("09:00", "withdrawn", channel="sms"), msg("m", "promotion", "10:00")],
        SEND,
    ),
    (
        "consent_withdrawn_transactional_not_checked",
        [consent("09:00", "withdrawn"), msg("m", "promotion", "10:00", category="transactional")],
        SEND,
    ),
    (
        "consent_withdrawn_non_utc_offset",
        [consent("2026-11-20T11:00:00+01:00", "withdrawn"), msg("m", "promotion", "10:00")],
        suppress("consent_withdrawn"),
    ),
    # ---------------------------------------------------------------- stale_trigger
    (
        "stale_exactly_24h_is_not_stale",
        [msg("m", "promotion", "10:00", timestamp="2026-11-21T10:00:00Z")],
        SEND,
    ),
    (
        "stale_24h_and_one_second",
        [msg("m", "promotion", "10:00", timestamp="2026-11-21T10:00:01Z")],
        suppress("stale_trigger"),
    ),
    (
        "stale_applies_to_transactional",
        [
            msg(
                "m",
                "promotion",
                "10:00",
                category="transactional",
                timestamp="2026-11-22T10:00:00Z",
            )
        ],
        suppress("stale_trigger"),
    ),
    ("stale_without_timestamp_uses_event_time", [msg("m", "promotion", "10:00")], SEND),
    # ---------------------------------------------------------------- cart_already_purchased
    (
        "cart_purchase_after_update",
        [cart("m", "10:00", "09:59"), purchase("10:02")],
        suppress("cart_already_purchased"),
    ),
    (
        "cart_purchase_exactly_at_update",
        [purchase("09:59"), cart("m", "10:00", "09:59")],
        suppress("cart_already_purchased"),
    ),
    (
        "cart_purchase_one_second_before_update",
        [purchase("09:58:59"), cart("m", "10:00", "09:59")],
        SEND,
    ),
    (
        "cart_purchase_exactly_at_deadline",
        [cart("m", "10:00", "09:59"), purchase("10:05")],
        suppress("cart_already_purchased"),
    ),
    (
        "cart_purchase_one_second_after_deadline",
        [cart("m", "10:00", "09:59"), purchase("10:05:01")],
        SEND,
    ),
    (
        "cart_purchase_non_utc_offset_same_instant",
        [cart("m", "10:00", "09:59"), purchase("2026-11-20T12:05:00+02:00")],
        suppress("cart_already_purchased"),
    ),
    ("cart_customer_never_seen", [cart("m", "10:00", "09:59")], SEND),
    (
        "cart_other_customers_purchase",
        [cart("m", "10:00", "09:59"), purchase("10:02", cid="c-7")],
        SEND,
    ),
    # ---------------------------------------------------------------- welcome_back_to_new_customer
    (
        "welcome_back_never_seen",
        [msg("m", "welcome_back", "10:00")],
        suppress("welcome_back_to_new_customer"),
    ),
    (
        "welcome_back_one_session",
        [session("09:00"), msg("m", "welcome_back", "10:00")],
        suppress("welcome_back_to_new_customer"),
    ),
    (
        "welcome_back_two_sessions",
        [session("08:00"), session("09:00"), msg("m", "welcome_back", "10:00")],
        SEND,
    ),
    (
        "welcome_back_second_session_exactly_at_created",
        [session("08:00"), session("10:00"), msg("m", "welcome_back", "10:00")],
        SEND,
    ),
    (
        "welcome_back_second_session_one_second_late",
        [session("08:00"), msg("m", "welcome_back", "10:00"), session("10:00:01")],
        suppress("welcome_back_to_new_customer"),
    ),
    (
        "welcome_back_ended_sessions_do_not_count",
        [session("08:00"), session("08:30", kind="ended"), msg("m", "welcome_back", "10:00")],
        suppress("welcome_back_to_new_customer"),
    ),
    # ---------------------------------------------------------------- welcome_to_existing_customer
    (
        "welcome_after_purchase",
        [purchase("09:00"), msg("m", "welcome", "10:00")],
        suppress("welcome_to_existing_customer"),
    ),
    (
        "welcome_purchase_exactly_at_created",
        [purchase("10:00"), msg("m", "welcome", "10:00")],
        suppress("welcome_to_existing_customer"),
    ),
    (
        "welcome_purchase_one_second_after",
        [msg("m", "welcome", "10:00"), purchase("10:00:01")],
        SEND,
    ),
    ("welcome_never_seen", [msg("m", "welcome", "10:00")], SEND),
    (
        "welcome_purchase_months_ago",
        [purchase("2026-06-01T10:00:00Z"), msg("m", "welcome", "10:00")],
        suppress("welcome_to_existing_customer"),
    ),
    # ------------------------------------------------ review_request_for_returned_order
    (
        "review_whole_order_returned",
        [
            purchase("2026-11-10T10:00:00Z", ["A", "B"], order="o-9"),
            ret("2026-11-15T10:00:00Z", "o-9", [("A", 1), ("B", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
        ],
        suppress("review_request_for_returned_order"),
    ),
    (
        "review_returned_in_two_returns",
        [
            purchase("2026-11-10T10:00:00Z", ["A", "B"], order="o-9"),
            ret("2026-11-12T10:00:00Z", "o-9", [("A", 1)]),
            ret("2026-11-15T10:00:00Z", "o-9", [("B", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
        ],
        suppress("review_request_for_returned_order"),
    ),
    (
        "review_partial_return_of_order",
        [
            purchase("2026-11-10T10:00:00Z", ["A", "B"], order="o-9"),
            ret("2026-11-15T10:00:00Z", "o-9", [("A", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
        ],
        SEND,
    ),
    (
        "review_partial_quantity_return",
        [
            purchase("2026-11-10T10:00:00Z", ["A"], order="o-9", qty=2),
            ret("2026-11-15T10:00:00Z", "o-9", [("A", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
        ],
        SEND,
    ),
    (
        "review_reviewed_skus_all_returned",
        [
            purchase("2026-11-10T10:00:00Z", ["A", "B"], order="o-9"),
            ret("2026-11-15T10:00:00Z", "o-9", [("A", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9", "skus": ["A"]}),
        ],
        suppress("review_request_for_returned_order"),
    ),
    (
        "review_return_of_other_order",
        [
            purchase("2026-11-10T10:00:00Z", ["A"], order="o-9"),
            purchase("2026-11-10T11:00:00Z", ["A"], order="o-10"),
            ret("2026-11-15T10:00:00Z", "o-10", [("A", 1)]),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
        ],
        SEND,
    ),
    (
        "review_return_after_deadline",
        [
            purchase("2026-11-10T10:00:00Z", ["A"], order="o-9"),
            msg("m", "review_request", "10:00", context={"order_id": "o-9"}),
            ret("10:00:01", "o-9", [("A", 1)]),
        ],
        SEND,
    ),
    # ---------------------------------------------------------------- win_back_active_customer
    (
        "win_back_purchase_last_week",
        [purchase("2026-11-13T10:00:00Z"), msg("m", "win_back", "10:00")],
        suppress("win_back_active_customer"),
    ),
    (
        "win_back_purchase_exactly_30d_before",
        [purchase("2026-10-21T10:00:00Z"), msg("m", "win_back", "10:00")],
        SEND,
    ),
    (
        "win_back_purchase_30d_minus_one_second",
        [purchase("2026-10-21T10:00:01Z"), msg("m", "win_back", "10:00")],
        suppress("win_back_active_customer"),
    ),
    (
        "win_back_session_yesterday",
        [session("2026-11-19T10:00:00Z"), msg("m", "win_back", "10:00")],
        suppress("win_back_active_customer"),
    ),
    (
        "win_back_dormant_customer",
        [purchase("2026-09-01T10:00:00Z"), msg("m", "win_back", "10:00")],
        SEND,
    ),
    ("win_back_never_seen", [msg("m", "win_back", "10:00")], SEND),
    # ---------------------------------------------------------------- recommends_*
    (
        "recommend_returned_is_removed",
        [
            purchase("2026-11-01T10:00:00Z", ["A"], order="o-1"),
            ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
            rec_msg("m", "10:00", ["A", "B"]),
        ],
        ("rewrite", "recommends_returned_product", ["A"]),
    ),
    (
        "recommend_only_returned_suppressed",
        [
            purchase("2026-10-01T10:00:00Z", ["A"], order="o-1"),
            ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
            rec_msg("m", "10:00", ["A"]),
        ],
        ("suppress", "recommends_returned_product", []),
    ),
    (
        "recommend_returned_exactly_30d_before_kept",
        [
            purchase("2026-10-01T10:00:00Z", ["A"], order="o-1"),
            ret("2026-10-21T10:00:00Z", "o-1", [("A", 1)]),
            rec_msg("m", "10:00", ["A", "B"]),
        ],
        SEND,
    ),
    (
        "recommend_recent_purchase_removed",
        [purchase("2026-11-15T10:00:00Z", ["B"]), rec_msg("m", "10:00", ["A", "B", "C"])],
        ("rewrite", "recommends_recent_purchase", ["B"]),
    ),
    (
        "recommend_purchase_exactly_14d_before_kept",
        [purchase("2026-11-06T10:00:00Z", ["B"]), rec_msg("m", "10:00", ["A", "B"])],
        SEND,
    ),
    (
        "recommend_purchase_14d_minus_one_second_removed",
        [purchase("2026-11-06T10:00:01Z", ["B"]), rec_msg("m", "10:00", ["A", "B"])],
        ("rewrite", "recommends_recent_purchase", ["B"]),
    ),
    (
        "recommend_all_bought_suppressed",
        [purchase("2026-11-15T10:00:00Z", ["A", "B"]), rec_msg("m", "10:00", ["A", "B"])],
        ("suppress", "recommends_recent_purchase", []),
    ),
    (
        "recommend_bought_and_returned_reports_returned",
        [
            purchase("2026-11-15T10:00:00Z", ["A"], order="o-1"),
            ret("2026-11-16T10:00:00Z", "o-1", [("A", 1)]),
            rec_msg("m", "10:00", ["A", "B"]),
        ],
        ("rewrite", "recommends_returned_product", ["A"]),
    ),
    (
        "recommend_both_rules_strip_everything",
        [
            purchase("2026-11-01T10:00:00Z", ["A"], order="o-1"),
            ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
            purchase("2026-11-15T10:00:00Z", ["B"]),
            rec_msg("m", "10:00", ["A", "B"]),
        ],
        # the contract's attribution: the first rule that stripped names the decision
        ("suppress", "recommends_returned_product", []),
    ),
    (
        "recommend_partial_return_still_removed",
        [
            purchase("2026-11-01T10:00:00Z", ["A"], order="o-1", qty=3),
            ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
            rec_msg("m", "10:00", ["A", "B"]),
        ],
        ("rewrite", "recommends_returned_product", ["A"]),
    ),
    ("recommend_empty_sku_list_sent", [rec_msg("m", "10:00", [])], SEND),
    (
        "replenishment_never_stripped_of_purchases",
        [
            purchase("2026-11-15T10:00:00Z", ["A"]),
            rec_msg("m", "10:00", ["A"], trigger="replenishment"),
        ],
        SEND,
    ),
    # ---------------------------------------------------------------- duplicate_content
    (
        "duplicate_content_same_everything",
        [
            msg("m0", "promotion", "09:00", payload={"t": 1, "u": 2}),
            msg("m", "promotion", "10:00", payload={"u": 2, "t": 1}),
        ],
        suppress("duplicate_content"),
    ),
    (
        "duplicate_content_exactly_24h_apart",
        [msg("m0", "promotion", "2026-11-19T10:00:00Z"), msg("m", "promotion", "10:00")],
        SEND,
    ),
    (
        "duplicate_content_other_payload",
        [
            msg("m0", "promotion", "09:00", payload={"t": 1}),
            msg("m", "promotion", "10:00", payload={"t": 2}),
        ],
        SEND,
    ),
    (
        "duplicate_content_other_channel",
        [msg("m0", "promotion", "09:00", channel="sms"), msg("m", "promotion", "10:00")],
        SEND,
    ),
    (
        "duplicate_content_same_sku_set_other_order",
        [rec_msg("m0", "09:00", ["A", "B"]), rec_msg("m", "10:00", ["B", "A"])],
        suppress("duplicate_content"),
    ),
    (
        "duplicate_content_suppressed_original_does_not_count",
        [
            consent("08:00", "withdrawn"),
            msg("m0", "promotion", "09:00"),
            consent("09:30", "granted"),
            msg("m", "promotion", "10:00"),
        ],
        SEND,
    ),
    # ---------------------------------------------------------------- frequency_cap
    (
        "frequency_fourth_in_a_day",
        [msg(f"m{i}", "promotion", f"0{i + 6}:00", payload={"n": i}) for i in range(3)]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        suppress("frequency_cap"),
    ),
    (
        "frequency_third_send_ok",
        [msg(f"m{i}", "promotion", f"0{i + 6}:00", payload={"n": i}) for i in range(2)]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        SEND,
    ),
    (
        "frequency_oldest_exactly_24h_before",
        [
            msg("m0", "promotion", "2026-11-19T10:00:00Z", payload={"n": 0}),
            msg("m1", "promotion", "07:00", payload={"n": 1}),
            msg("m2", "promotion", "08:00", payload={"n": 2}),
            msg("m", "promotion", "10:00", payload={"n": 9}),
        ],
        SEND,
    ),
    (
        "frequency_other_channel_not_counted",
        [
            msg(f"m{i}", "promotion", f"0{i + 6}:00", channel="sms", payload={"n": i})
            for i in range(3)
        ]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        SEND,
    ),
    (
        "frequency_transactional_not_counted",
        [
            msg(f"m{i}", "promotion", f"0{i + 6}:00", category="transactional", payload={"n": i})
            for i in range(3)
        ]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        SEND,
    ),
    (
        "frequency_transactional_not_capped",
        [msg(f"m{i}", "promotion", f"0{i + 6}:00", payload={"n": i}) for i in range(3)]
        + [msg("m", "promotion", "10:00", category="transactional", payload={"n": 9})],
        SEND,
    ),
    # Same created_at (same deadline): decided in message-id order, and each sees the earlier ones.
    (
        "frequency_same_instant_sees_smaller_ids",
        [msg(f"a{i}", "promotion", "10:00", payload={"n": i}) for i in range(3)]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        suppress("frequency_cap"),
    ),
    (
        "frequency_same_instant_larger_ids_come_after",
        [msg(f"z{i}", "promotion", "10:00", payload={"n": i}) for i in range(3)]
        + [msg("m", "promotion", "10:00", payload={"n": 9})],
        SEND,
    ),
    # ---------------------------------------------------------------- several rules at once
    (
        "first_rule_wins_consent_before_stale",
        [
            consent("09:00", "withdrawn"),
            msg("m", "promotion", "10:00", timestamp="2026-11-22T10:00:00Z"),
        ],
        suppress("consent_withdrawn"),
    ),
    (
        "first_rule_wins_stale_before_cart",
        [cart("m", "10:00", "09:59", timestamp="2026-11-22T10:00:00Z"), purchase("10:02")],
        suppress("stale_trigger"),
    ),
    (
        "first_rule_wins_consent_before_recommendation",
        [
            consent("09:00", "withdrawn"),
            purchase("2026-11-15T10:00:00Z", ["A"]),
            rec_msg("m", "10:00", ["A"]),
        ],
        suppress("consent_withdrawn"),
    ),
    (
        "rewrite_then_frequency_cap_suppresses",
        [msg(f"m{i}", "promotion", f"0{i + 6}:00", payload={"n": i}) for i in range(3)]
        + [purchase("2026-11-15T10:00:00Z", ["A"]), rec_msg("m", "10:00", ["A", "B"])],
        ("suppress", "frequency_cap", []),
    ),
]


@pytest.mark.parametrize(
    ("history", "expected"), [(h, e) for _n, h, e in CASES], ids=[n for n, _h, _e in CASES]
)
def test_rule(
    tmp_path: Path, history: list[dict[str, Any]], expected: tuple[str, str | None, list[str]]
) -> None:
    decisions, summary = run(tmp_path, history)
    assert not summary.bad_lines and not summary.unreadable, summary.render()
    d = decisions["m"]
    assert (d["action"], d["rule"], d["removed_skus"]) == expected


def test_duplicate_message_second_copy(tmp_path: Path) -> None:
    decisions, _ = run(tmp_path, [msg("m", "promotion", "10:00"), msg("m", "promotion", "10:01")])
    assert decisions["m"]["action"] == "send"
    assert (decisions["m#last"]["action"], decisions["m#last"]["rule"]) == (
        "suppress",
        "duplicate_message",
    )


def test_duplicate_message_transactional(tmp_path: Path) -> None:
    recs = [
        msg("m", "promotion", "10:00", category="transactional"),
        msg("m", "promotion", "10:00", category="transactional"),
    ]
    decisions, summary = run(tmp_path, recs)
    assert summary.candidates == 2
    assert decisions["m"]["action"] == "send"
    assert (decisions["m#last"]["action"], decisions["m#last"]["rule"]) == (
        "suppress",
        "duplicate_message",
    )


def test_both_recommendation_rules_emptying_it_name_the_first_and_every_sku(
    tmp_path: Path,
) -> None:
    from streams.contract.history import INPUT_TOPICS
    from streams.core.engine import Engine
    from streams.core.outcomes import Decided
    from streams.core.policy import DEFAULT_POLICY
    from streams.core.store import MemoryStore
    from tests.helpers import feed

    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in INPUT_TOPICS:
        engine.clock(0).set_idle(t, True)
    for rec in [
        purchase("2026-11-01T10:00:00Z", ["A"], order="o-1"),
        ret("2026-11-05T10:00:00Z", "o-1", [("A", 1)]),
        purchase("2026-11-15T10:00:00Z", ["B"]),
        rec_msg("m", "10:00", ["A", "B"]),
        session("11:00"),
    ]:
        feed(engine, rec)
    (d,) = [o.decision for o in engine.release(0, 0) if isinstance(o, Decided)]
    assert (d.action, d.rule) == ("suppress", "recommends_returned_product")
    assert d.reason == (
        "every recommended product was removed: A returned at 2026-11-05 10:00 UTC, "
        "B bought at 2026-11-15 10:00 UTC"
    )
    assert [e[0] for e in d.evidence] == ["returns", "purchases"]
