"""recommends_from_stale_signal, table-driven: a recommendation chosen from browsing
months ago loses those SKUs, and is suppressed when none is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import at, msg, purchase, run


def stale_rec(mid: str, created: str, skus: list[str], basis: dict[str, str]) -> dict[str, Any]:
    return msg(
        mid,
        "product_recommendation",
        created,
        context={"skus": skus, "basis": {s: at(t) for s, t in basis.items()}},
    )


Case = tuple[str, list[dict[str, Any]], tuple[str, str | None, list[str]]]

CASES: list[Case] = [
    (
        "one_sku_from_months_ago_is_removed",
        [stale_rec("m", "10:00", ["A", "B"], {"A": "2026-08-01T10:00:00Z", "B": "09:00"})],
        ("rewrite", "recommends_from_stale_signal", ["A"]),
    ),
    (
        "every_sku_stale_suppresses",
        [stale_rec("m", "10:00", ["A"], {"A": "2026-07-01T10:00:00Z"})],
        ("suppress", "recommends_from_stale_signal", []),
    ),
    (
        "signal_exactly_thirty_days_before_is_stale",  # within 30 d means X - 30d < t
        [stale_rec("m", "10:00", ["A", "B"], {"A": "2026-10-21T10:00:00Z"})],
        ("rewrite", "recommends_from_stale_signal", ["A"]),
    ),
    (
        "signal_a_millisecond_inside_the_window_is_fresh",
        [stale_rec("m", "10:00", ["A", "B"], {"A": "2026-10-21T10:00:00.001Z"})],
        ("send", None, []),
    ),
    (
        "skus_without_a_basis_are_not_checked",
        [stale_rec("m", "10:00", ["A", "B"], {"C": "2026-01-01T10:00:00Z"})],
        ("send", None, []),
    ),
    (
        "bought_and_stale_both_strip_and_the_first_rule_is_named",
        [
            purchase("2026-11-18T10:00:00Z", ["A"]),
            stale_rec("m", "10:00", ["A", "B", "C"], {"B": "2026-06-01T10:00:00Z"}),
        ],
        ("rewrite", "recommends_recent_purchase", ["A", "B"]),
    ),
]


@pytest.mark.parametrize(("name", "records", "expected"), CASES, ids=[c[0] for c in CASES])
def test_stale_signal(
    tmp_path: Path, name: str, records: list[dict[str, Any]], expected: tuple[Any, ...]
) -> None:
    decisions, _ = run(tmp_path, records)
    d = decisions["m"]
    assert (d["action"], d["rule"], d["removed_skus"]) == expected


def test_the_reason_names_the_signal_and_its_age(tmp_path: Path) -> None:
    from streams.core.engine import Engine
    from streams.core.outcomes import Decided
    from streams.core.policy import DEFAULT_POLICY
    from streams.core.store import MemoryStore
    from streams.core.vocabulary import INPUT_KINDS
    from tests.helpers import feed

    engine = Engine(DEFAULT_POLICY, MemoryStore())
    for t in INPUT_KINDS:
        engine.clock(0).set_idle(t, True)
    feed(engine, stale_rec("m", "10:00", ["A", "B"], {"A": "2026-09-01T10:00:00Z"}))
    (d,) = [o.decision for o in engine.release(0, 0) if isinstance(o, Decided)]
    assert d.reason is not None and "A's signal is from 2026-09-01 10:00 UTC, 80d" in d.reason
    assert d.evidence == (("outbound", "m", 1788256800000),)


def test_a_policy_can_set_the_age_and_suppress_instead(tmp_path: Path) -> None:
    from streams.core.policy import policy_from_mapping

    policy = policy_from_mapping(
        {"rules": {"recommends_from_stale_signal": {"max_signal_age": "7d", "action": "suppress"}}}
    )
    records = [stale_rec("m", "10:00", ["A", "B"], {"A": "2026-11-10T10:00:00Z"})]
    decisions, _ = run(tmp_path, records, policy)
    assert (decisions["m"]["action"], decisions["m"]["rule"]) == (
        "suppress",
        "recommends_from_stale_signal",
    )
