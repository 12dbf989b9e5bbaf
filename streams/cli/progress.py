"""Progress of long work on stderr: done/total, rate, ETA.

On a terminal one line is redrawn in place (at most twice a second); into a
file or a pipe, a plain line every few seconds, so a CI log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, what: str, total: int | None = None, out: TextIO | None = None) -> None:
        self.what = what
        self.total = total
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.started = time.monotonic()
        self._last = self.started
        self.done = 0

    def line(self) -> str:
        took = max(1e-9, time.monotonic() - self.started)
        rate = self.done / took
        if self.total:
            left = (self.total - self.done) / rate if rate else 0.0
            return (
                f"{self.what}: {self.done:,}/{self.total:,} records "
                f"({self.done / self.total:.0%}) {rate:,.0f}/s ETA {left:,.0f}s"
            )
        return f"{self.what}: {self.done:,} records {rate:,.0f}/s"

    def restart(self, total: int | None) -> None:
        """Start counting now: the bar can exist before the work's size is known (and
        before checks that may end the command) without those counting against the rate."""
        self.total = total
        self.started = self._last = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._last < (0.5 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            self.out.write("\r" + self.line() + "\x1b[K")
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()

    def finish(self) -> None:
        self.out.write(
            ("\r" if self.tty else "") + self.line() + ("\x1b[K\n" if self.tty else "\n")
        )
        self.out.flush()


def count_lines(path: str) -> int:
    """Lines in a (possibly gzip) file, for an ETA: a fast pass in C-sized chunks."""
    from streams.contract.history import open_text

    n = 0
    with open_text(path) as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return n
