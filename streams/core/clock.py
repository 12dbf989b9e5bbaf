"""Event time: timestamps as integer milliseconds, and per-partition stream time.

Stream time decides when a held candidate may be decided. Every input
stream of a partition keeps a *frontier*: the latest event time read from
it minus that topic's allowed lateness, so every record of that stream with
an earlier event time has been read (records within a stream come in
event-time order, give or take the lateness). A candidate with deadline
``D`` is decided once ``D`` is strictly before every non-idle stream's
frontier: a second event at exactly ``D`` may still be unread while the
frontier equals ``D``. When every stream is idle (caught up live, exhausted
offline) nothing more can arrive now and stream time is the latest event
time read: ``D`` at or before it is decided.

A partition's streams are its own five input topic-partitions plus, when
producers may put records on the wrong partition, the same five topics of
every *other* partition: a record found there is forwarded to its right
partition through the app's re-route topic, followed by progress markers
that carry the source stream's frontier (as Flink carries watermarks across
a shuffle). A partition's stream time therefore never passes an event that
is still on its way to it.

The frontier of its own stream at the moment a record is read is kept with
the record (``arr``): a fact that arrived after its stream had passed a
candidate's deadline is late for that candidate, in every interleaving.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(dt: datetime) -> int:
    """Aware datetime -> epoch milliseconds; exact (no float), the offset honoured. From
    the difference's fields, cheaper than ``// timedelta(milliseconds=1)``: it runs
    twice per record."""
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def _fields(ms: int) -> tuple[time.struct_time, int]:
    """UTC calendar fields of epoch ms, and the leftover ms. ``time.gmtime`` and an
    f-string, cheaper than ``datetime.fromtimestamp`` plus ``strftime``: reasons name
    several times per decision. Same range as ``datetime`` (years 1-9999)."""
    secs, milli = divmod(ms, 1000)
    tm = time.gmtime(secs)
    if not 1 <= tm.tm_year <= 9999:
        raise ValueError(f"year {tm.tm_year} is out of range")
    return tm, milli


def iso(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC (``2026-11-20T10:05:00Z``), millis only when present."""
    tm, milli = _fields(ms)
    day = f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"  # %Y: the year unpadded (glibc)
    if milli:
        return f"{day}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{milli:03d}Z"
    return f"{day}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}Z"


def human(ms: int) -> str:
    """Epoch ms -> what an ops person reads at 3 a.m.: ``2026-11-20 10:05 UTC``."""
    tm, milli = _fields(ms)
    day = f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
    if tm.tm_sec or milli:
        return f"{day} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} UTC"
    return f"{day} {tm.tm_hour:02d}:{tm.tm_min:02d} UTC"


def human_span(ms: int) -> str:
    """A duration for a reason text: ``26h 3m``, ``6d 2h``, ``45s``."""
    ms = abs(ms)
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest // 1000
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if v]
    return " ".join(parts[:2]) if parts else "0s"


NEVER = -(2**62)

Source = tuple[str, int]  # (input topic role, source partition) of a re-routed stream


class StreamClock:
    """Frontiers and idleness of one partition's input streams (local and re-routed)."""

    __slots__ = (
        "_cached",
        "_frontier",
        "_idle",
        "_lateness",
        "_latest",
        "_remote",
        "_remote_part",
        "_topics",
    )

    def __init__(
        self,
        topics: tuple[str, ...],
        lateness: dict[str, int] | None = None,
        remote: tuple[Source, ...] = (),
    ) -> None:
        self._topics = topics
        self._lateness = lateness or {}
        self._frontier: dict[str, int | None] = dict.fromkeys(topics)
        self._latest: int | None = None
        self._idle: dict[str, bool] = dict.fromkeys(topics, False)
        # source -> [frontier or None, idle, stamp]; unknown until its first progress marker
        self._remote: dict[Source, list[int | bool | None]] = {s: [None, False, -1] for s in remote}
        # (stream time, all idle), computed when first asked after a change: a record is
        # asked about it several times (ingest, release), a change comes once per record
        self._cached: tuple[int | None, bool] | None = None
        self._remote_part: tuple[bool, bool, int | None] | None = None

    def frontier(self, topic: str) -> int:
        """The topic's frontier now (``NEVER`` before its first record): a record read
        now with an earlier event time is out of order by more than the lateness."""
        f = self._frontier[topic]
        return NEVER if f is None else f

    def observe(self, topic: str, event_ms: int) -> None:
        """A record of the local ``topic`` with this event time was read."""
        f = event_ms - self._lateness.get(topic, 0)
        cur = self._frontier[topic]
        if cur is None or f > cur:
            self._frontier[topic] = f
            self._cached = None
        if self._latest is None or event_ms > self._latest:
            self._latest = event_ms
            self._cached = None

    def resume(self, topic: str, frontier: int) -> None:
        """Start where the committed records of ``topic`` left its frontier (from the
        offset commit's metadata): records read again get the arrival frontier an
        uninterrupted run gave them."""
        self._cached = None
        cur = self._frontier[topic]
        if cur is None or frontier > cur:
            self._frontier[topic] = frontier
        latest = frontier + self._lateness.get(topic, 0)
        if self._latest is None or latest > self._latest:
            self._latest = latest

    def observe_forwarded(self, event_ms: int) -> None:
        """A re-routed record was read: its stream's progress comes by marker."""
        if self._latest is None or event_ms > self._latest:
            self._latest = event_ms
            self._cached = None

    def set_remote(self, source: Source, frontier: int | None, idle: bool, stamp: int) -> bool:
        """A progress marker of a re-routed stream; returns whether this clock expects it.

        Frontiers only move forward; idleness is taken from the newest marker (``stamp``:
        when its source wrote it), so a marker that took the long way through Kafka
        cannot undo a newer one handed over in memory."""
        cur = self._remote.get(source)
        if cur is None:
            return False
        self._cached = self._remote_part = None
        old = cur[0]
        if frontier is not None and (old is None or frontier > old):
            cur[0] = frontier
        if stamp >= cur[2]:  # type: ignore[operator]
            cur[1] = idle
            cur[2] = stamp
        return True

    def busy(self, source: Source) -> None:
        """A record forwarded from ``source`` was read: it is not idle, whatever the last
        marker said, until a newer marker says so again."""
        cur = self._remote.get(source)
        if cur is not None:
            cur[1] = False
            self._cached = self._remote_part = None

    def set_idle(self, topic: str, idle: bool) -> None:
        if self._idle[topic] != idle:
            self._idle[topic] = idle
            self._cached = None

    def idle(self, topic: str) -> bool:
        return self._idle[topic]

    def local(self) -> dict[str, tuple[int | None, bool]]:
        """Frontier and idleness of each local topic: what a progress marker carries."""
        return {t: (self._frontier[t], self._idle[t]) for t in self._topics}

    @property
    def all_idle(self) -> bool:
        return all(self._idle.values()) and all(bool(r[1]) for r in self._remote.values())

    @property
    def latest(self) -> int | None:
        return self._latest

    def _now(self) -> tuple[int | None, bool]:
        """(stream time, all idle): asked after nearly every record that moved a frontier
        (one loop over the local streams, no intermediate lists). The re-routed streams'
        part is kept apart: with identity links a partition hears every other partition's
        streams, and a local record would otherwise walk all of them again."""
        cached = self._cached
        if cached is not None:
            return cached
        idle = self._idle
        frontier = self._frontier
        busy = False
        unknown = False
        low = 0
        for t in self._topics:
            if not idle[t]:
                v = frontier[t]
                if v is None:
                    unknown = True
                elif not busy or v < low:
                    low = v
                busy = True
        if self._remote:
            r_busy, r_unknown, r_low = self._remote_part or self._remote_now()
            if r_busy:
                unknown = unknown or r_unknown
                if r_low is not None and (not busy or r_low < low):
                    low = r_low
                busy = True
        if not busy:
            cached = (self._latest, True)
        elif unknown:
            cached = (None, False)
        else:
            cached = (low, False)
        self._cached = cached
        return cached

    def _remote_now(self) -> tuple[bool, bool, int | None]:
        """(any re-routed stream busy, one of them unknown, the lowest known busy frontier),
        kept until a marker or a forwarded record changes them."""
        busy = unknown = False
        low: int | None = None
        for r in self._remote.values():
            if not r[1]:
                busy = True
                rv = r[0]
                if rv is None:
                    unknown = True
                elif low is None or rv < low:
                    low = rv
        self._remote_part = (busy, unknown, low)
        return self._remote_part

    def releasable(self, deadline: int) -> bool:
        """May a candidate with this deadline be decided now? Up to the latest event when
        every stream is idle; else strictly before every busy stream's frontier."""
        st, idle = self._now()
        if st is None:
            return False
        return deadline <= st if idle else deadline < st

    def stream_time(self) -> int | None:
        """The contract's stream time: min over non-idle streams of the frontier."""
        return self._now()[0]

    def waiting_for(self) -> list[str]:
        """Streams holding stream time back (for the stats page): ``sessions``, ``outbound@3``."""
        out = [t for t in self._topics if not self._idle[t]]
        out += [f"{t}@{p}" for (t, p), r in self._remote.items() if not r[1]]
        return out
