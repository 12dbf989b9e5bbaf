"""Giving freed memory back to the operating system.

A worker deciding at full speed allocates and frees a great deal around the states it
keeps (fetched batches, decoded states, outputs, changelog batches), interleaved with
those states' bytes. glibc keeps the freed pages for reuse and returns only the top of
its heap on its own, so after a burst the worker's RSS stays at the burst's high-water
mark: about three times what its states take (see ``bench/README.md``). A worker
restarted on the same state is back to the states' size. ``malloc_trim(0)`` returns
every whole free page inside the heap as well; the worker calls it after work that
churns through every customer (a sweep, a recovery) and once caught up after a burst
of records (``Maintenance.caught_up``).

Blocks the event loop for as long as the trim takes (the heap's lock is held); the
time is logged and kept in ``/stats/`` (``loop.last_trim_ms``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(slots=True)
class Trimmed:
    returned: int  # bytes of RSS given back
    took_ms: float


class Heap:
    """``trim()`` where the C library has ``malloc_trim`` (glibc); a no-op elsewhere."""

    def __init__(self) -> None:
        self._trim: Callable[[int], int] | None = None
        name = ctypes.util.find_library("c")
        if name is not None:
            libc = ctypes.CDLL(name)
            if hasattr(libc, "malloc_trim"):
                self._trim = libc.malloc_trim

    @property
    def can_trim(self) -> bool:
        return self._trim is not None

    def trim(self) -> Trimmed | None:
        if self._trim is None:
            return None
        before, t0 = _rss(), time.perf_counter()
        self._trim(0)
        took = (time.perf_counter() - t0) * 1000
        return Trimmed(max(0, before - _rss()), took)
