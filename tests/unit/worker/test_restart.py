"""When the worker restarts itself after a passing transaction failure, and when it
gives up and leaves the restart to its supervisor."""

from __future__ import annotations

import pytest

from streams.worker.restart import MAX_RESTARTS, restart_plan


@pytest.mark.parametrize(
    ("previous", "now", "plan"),
    [
        (None, 1000.0, (0, 0.5)),  # the first restart: half a second
        ("1:990", 1000.0, (1, 1.0)),  # the next within a minute: doubled
        ("6:990", 1000.0, (6, 30.0)),  # capped at 30 s
        ("4:900", 1000.0, (0, 0.5)),  # the last one ran for over a minute: a new row
        (f"{MAX_RESTARTS}:990", 1000.0, None),  # a loop: exit 1, the supervisor decides
        ("garbage", 1000.0, (0, 0.5)),  # an unreadable counter counts as none
    ],
    ids=["first", "second-in-a-row", "capped", "after-a-minute", "gives-up", "unreadable"],
)
def test_restart_backoff_doubles_in_a_row_and_gives_up_after_the_limit(
    previous: str | None, now: float, plan: tuple[int, float] | None
) -> None:
    assert restart_plan(previous, now) == plan
