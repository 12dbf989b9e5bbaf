"""Sharing the event loop: long walks (restore, sweep, loading a changelog, writing the
local copy) run in steps and give the loop back between them.

A step is at most ``STEP_BUDGET`` of work. Giving the loop back with
``asyncio.sleep(0)`` is not enough: the walk is then first in the next round of
ready callbacks, while whatever became due during its step (a timer, a socket that
turned readable) only gets its task woken in that round, and so runs after the next
step: a waiting task saw two or three steps go by. ``give_way`` waits on a timer
instead, which puts the walk behind everything already due; the stall is then one
step. The wait is the shortest a selector honours (it rounds a timeout up to whole
milliseconds anyway). ``bench/README.md`` has the stalls measured with a million
customers.
"""

from __future__ import annotations

import asyncio

STEP_BUDGET = 0.02
"""Seconds of work between giving the event loop back: well under the bound on a stall
we hold the worker to (50 ms, ``bench/README.md``), since other work (heartbeats, the
web page, the records) waits meanwhile."""

GIVE_WAY = 0.001
"""Seconds a walk waits between steps: a timer, so that whatever is due runs first."""


async def give_way() -> None:
    """Let every callback and task that is ready or due run before the next step."""
    await asyncio.sleep(GIVE_WAY)
