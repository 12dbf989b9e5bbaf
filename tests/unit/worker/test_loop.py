"""A long walk (sweep, restore, load) must let what became due during its step run
before its next step: otherwise every heartbeat or request waits two or three steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from streams.worker.loop import give_way


async def _order(pause: Callable[[], Awaitable[None]]) -> list[str]:
    loop = asyncio.get_running_loop()
    due = asyncio.Event()
    seen: list[str] = []

    async def waiter() -> None:
        await due.wait()
        seen.append("woken")

    async def walk() -> None:
        seen.append("step 1")
        loop.call_later(0, due.set)  # a timer (or a socket) that turns due mid-step
        await pause()
        seen.append("step 2")

    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the waiter is waiting
    await walk()
    await w
    return seen


@pytest.mark.parametrize(
    ("pause", "expected"),
    [
        pytest.param(give_way, ["step 1", "woken", "step 2"], id="give_way_lets_it_run_first"),
        pytest.param(
            lambda: asyncio.sleep(0), ["step 1", "step 2", "woken"], id="sleep_0_runs_ahead"
        ),
    ],
)
def test_what_becomes_due_during_a_step_runs_before_the_next(
    pause: Callable[[], Awaitable[None]], expected: list[str]
) -> None:
    assert asyncio.run(_order(pause)) == expected
