"""Event time: timestamps as integer milliseconds, and per-partition stream time.

Stream time decides when a held candidate may be decided. Every input topic
keeps a *frontier*: an event time such that every record of that topic with a
strictly earlier event time has been read.
In the worker the frontier is the latest event time read (records within a
topic arrive in event-time order, so anything before it has been read); the
offline replay knows the next unread record and uses its time. A candidate
with deadline ``D`` is decided once ``D`` is before every non-idle topic's
frontier, so every event at or before ``D`` is in state. When every topic is
idle (caught up live, exhausted offline) nothing more can arrive now and
stream time is the latest event time read: ``D`` at or before it is decided.

Using "strictly before the frontier" rather than "at or before the latest
event" is what makes the worker and the offline replay agree on ties: a
second event at exactly ``D`` that has not been read yet cannot be missed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(dt: datetime) -> int:
    """Aware datetime -> epoch milliseconds; exact (no float), the offset honoured."""
    return (dt - _EPOCH) // _ONE_MS


def iso(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC (``2026-11-20T10:05:00Z``), millis only when present."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def human(ms: int) -> str:
    """Epoch ms -> what an ops person reads at 3 a.m.: ``2026-11-20 10:05 UTC``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if dt.second or ms % 1000:
        return dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return dt.strftime("%Y-%m-%d %H:%M UTC")


def human_span(ms: int) -> str:
    """A duration for a reason text: ``26h 3m``, ``6d 2h``, ``45s``."""
    ms = abs(ms)
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest // 1000
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if v]
    return " ".join(parts[:2]) if parts else "0s"


class StreamClock:
    """Frontiers and idleness of one partition's input topics."""

    __slots__ = ("_frontier", "_idle", "_latest", "_topics")

    def __init__(self, topics: tuple[str, ...]) -> None:
        self._topics = topics
        self._frontier: dict[str, int | None] = dict.fromkeys(topics)
        self._latest: int | None = None
        self._idle: dict[str, bool] = dict.fromkeys(topics, False)

    def observe(self, topic: str, event_ms: int) -> None:
        """A record of ``topic`` with this event time was read (live frontier = latest)."""
        cur = self._frontier[topic]
        if cur is None or event_ms > cur:
            self._frontier[topic] = event_ms
        if self._latest is None or event_ms > self._latest:
            self._latest = event_ms

    def set_frontier(self, topic: str, next_ms: int) -> None:
        """Offline: the next unread record of ``topic`` has this event time."""
        self._frontier[topic] = next_ms

    def set_idle(self, topic: str, idle: bool) -> None:
        self._idle[topic] = idle

    def idle(self, topic: str) -> bool:
        return self._idle[topic]

    @property
    def all_idle(self) -> bool:
        return all(self._idle.values())

    @property
    def latest(self) -> int | None:
        return self._latest

    def releasable(self, deadline: int) -> bool:
        """May a candidate with this deadline be decided now?"""
        if self.all_idle:
            return self._latest is not None and deadline <= self._latest
        for topic in self._topics:
            if self._idle[topic]:
                continue
            f = self._frontier[topic]
            if f is None or deadline >= f:
                return False
        return True

    def stream_time(self) -> int | None:
        """The contract's stream time: min over non-idle topics of the frontier."""
        if self.all_idle:
            return self._latest
        vals = [self._frontier[t] for t in self._topics if not self._idle[t]]
        if any(v is None for v in vals):
            return None
        return min(v for v in vals if v is not None)
