"""Freed memory inside the heap goes back to the operating system on a trim: the burst
of a full-speed replay otherwise stays in the worker's RSS (bench/README.md)."""

from __future__ import annotations

import pytest

from streams.worker.heap import Heap, Trimmed


def test_a_trim_returns_the_pages_freed_between_objects_still_alive() -> None:
    heap = Heap()
    if not heap.can_trim:
        pytest.skip("not glibc: nothing to trim with")  # CI and the Docker image run glibc
    # long-lived states interleaved with what a burst frees (each above pymalloc's 512 B,
    # so from malloc's heap, as a customer's state bytes are)
    kept, freed = [], []
    for i in range(80_000):
        (kept if i % 8 == 0 else freed).append(bytes(1500) + i.to_bytes(4, "big"))
    held = len(kept)
    del freed
    trimmed = heap.trim()
    assert trimmed is not None and trimmed.took_ms >= 0
    # 70,000 freed objects of 1.5 KB sat between 10,000 kept ones, in runs of seven
    # (about 100 MB): their whole pages go back (here about 65 MB; a no-op returns 0)
    assert trimmed.returned > 30 * 2**20, trimmed
    assert len(kept) == held  # the kept ones are untouched


class _CountingHeap:
    def __init__(self) -> None:
        self.trims = 0

    def trim(self) -> Trimmed:
        self.trims += 1
        return Trimmed(returned=0, took_ms=0.0)


@pytest.mark.parametrize(
    ("scenario", "handled_at_checks", "trims"),
    [
        ("caught up after a trickle: no trim", [10, 5_000, 60_000], 0),
        ("caught up after a burst: one trim", [10, 150_000, 150_000, 150_500], 1),
        ("two bursts: a trim after each", [120_000, 130_000, 260_000], 2),
    ],
)
def test_a_worker_gives_memory_back_once_caught_up_after_a_burst(
    scenario: str, handled_at_checks: list[int], trims: int
) -> None:
    import asyncio

    from streams.settings import Settings
    from streams.worker.maintenance import Maintenance

    handled = [0]
    m = Maintenance(
        Settings(), None, None, None, asyncio.Lock(), lambda: False,  # type: ignore[arg-type]
        lambda: handled[0],
    )  # fmt: skip
    heap = _CountingHeap()
    m.heap = heap  # type: ignore[assignment]
    for n in handled_at_checks:
        handled[0] = n
        m.caught_up(n)
    assert heap.trims == trims, scenario
