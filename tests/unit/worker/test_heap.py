"""Freed memory inside the heap goes back to the operating system on a trim: the burst
of a full-speed replay otherwise stays in the worker's RSS (bench/README.md)."""

from __future__ import annotations

import pytest

from streams.worker.heap import Heap


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
