"""Time formatting and conversion: exact, and the same text as ``datetime`` gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.core.clock import human, iso, to_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_reference(ms: int) -> str:
    """What ``iso`` gave before it was computed from ``time.gmtime`` fields."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_reference(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if dt.second or ms % 1000:
        return dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return dt.strftime("%Y-%m-%d %H:%M UTC")


@pytest.mark.parametrize(
    ("ms", "expected_iso", "expected_human"),
    [
        pytest.param(0, "1970-01-01T00:00:00Z", "1970-01-01 00:00 UTC", id="epoch"),
        pytest.param(
            1_795_161_900_123,
            "2026-11-20T08:05:00.123Z",
            "2026-11-20 08:05:00 UTC",
            id="with_millis",
        ),
        pytest.param(-1, "1969-12-31T23:59:59.999Z", "1969-12-31 23:59:59 UTC", id="just_before"),
        pytest.param(-62_135_596_800_000, "1-01-01T00:00:00Z", "1-01-01 00:00 UTC", id="year_one"),
        pytest.param(
            253_402_300_799_999,
            "9999-12-31T23:59:59.999Z",
            "9999-12-31 23:59:59 UTC",
            id="last_millisecond_of_9999",
        ),
    ],
)
def test_iso_and_human_of_edge_times(ms: int, expected_iso: str, expected_human: str) -> None:
    assert iso(ms) == expected_iso == iso_reference(ms)
    assert human(ms) == expected_human == human_reference(ms)


def test_iso_and_human_match_datetime_on_random_times() -> None:
    rng = random.Random(11)
    lo, hi = -62_135_596_800_000, 253_402_300_799_999
    values = [rng.randint(lo, hi) for _ in range(20_000)]
    values += [rng.randint(-(10**12), 4 * 10**12) // 1000 * 1000 for _ in range(5_000)]  # whole s
    values += [rng.randint(-(10**8), 4 * 10**9) * 60_000 for _ in range(5_000)]  # whole minutes
    for ms in values:
        assert iso(ms) == iso_reference(ms), ms
        assert human(ms) == human_reference(ms), ms


@pytest.mark.parametrize("ms", [253_402_300_800_000, -62_135_596_800_001])
def test_times_outside_years_1_to_9999_are_refused_as_datetime_refuses_them(ms: int) -> None:
    with pytest.raises(ValueError):
        iso_reference(ms)
    with pytest.raises(ValueError):
        iso(ms)
    with pytest.raises(ValueError):
        human(ms)


def test_to_ms_is_exact_for_any_offset_and_microseconds() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        us = rng.randint(-62_135_596_800_000_000, 253_402_214_400_000_000)
        off = timedelta(minutes=rng.randint(-23 * 60, 23 * 60))
        dt = (EPOCH + timedelta(microseconds=us)).astimezone(timezone(off))
        assert to_ms(dt) == us // 1000, dt
