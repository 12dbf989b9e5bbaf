"""A rule whose suppression rate jumps is noticed; steady or thin traffic is not."""

from __future__ import annotations

import pytest

from streams.core.misfire import MINUTE, MisfireDetector
from streams.core.policy import Misfire

CONFIG = Misfire(window="10m", baseline="1h", factor=3.0, min_jump=0.1, min_count=12)  # type: ignore[arg-type]
T0 = 1_790_000_000_000 // MINUTE * MINUTE


def feed(d: MisfireDetector, minute: int, decisions: int, suppressed: int, rule: str) -> None:
    for i in range(decisions):
        d.observe(T0 + minute * MINUTE + i, rule if i < suppressed else None)


@pytest.mark.parametrize(
    ("scenario", "baseline", "recent", "alarm"),
    [
        ("steady_rate_is_not_a_misfire", (20, 4), (20, 4), False),
        ("a_jump_from_20_to_80_percent_is", (20, 4), (20, 16), True),
        ("a_rule_that_never_fired_and_now_suppresses_half_is", (20, 0), (20, 10), True),
        ("too_few_suppressions_to_tell", (20, 0), (2, 2), False),
        ("a_small_rise_under_factor_times_baseline_is_not", (20, 8), (20, 12), False),
    ],
)
def test_misfire_detection(
    scenario: str, baseline: tuple[int, int], recent: tuple[int, int], alarm: bool
) -> None:
    d = MisfireDetector(CONFIG)
    for m in range(0, 50):  # an hour of baseline, minute by minute
        feed(d, m, baseline[0], baseline[1], "cart_already_purchased")
    assert d.check() == ([], [])
    for m in range(60, 70):  # the last ten minutes
        feed(d, m, recent[0] if m % 2 else 0, recent[1] if m % 2 else 0, "cart_already_purchased")
    started, _ = d.check()
    assert bool(started) is alarm, scenario
    if alarm:
        assert started[0].rule == "cart_already_purchased"
        assert "misfiring" in started[0].describe()
        assert d.check() == ([], [])  # reported once, while it lasts


def test_a_misfire_ends_when_the_rate_falls_back_and_old_minutes_are_forgotten() -> None:
    d = MisfireDetector(CONFIG)
    for m in range(0, 50):
        feed(d, m, 20, 2, "frequency_cap")
    for m in range(50, 60):
        feed(d, m, 20, 18, "frequency_cap")
    started, _ = d.check()
    assert [a.rule for a in started] == ["frequency_cap"]
    for m in range(60, 75):
        feed(d, m, 20, 2, "frequency_cap")
    assert d.check() == ([], ["frequency_cap"])
    feed(d, 500, 1, 0, "frequency_cap")  # hours later: the old minutes are dropped
    assert min(d._decisions) >= 500 - 70
