"""Campaigns: whole-audience checks that no single message can fail.

A recommender that falls back to the same three products for everyone, or a
journey that loops, sends messages that each look fine. What is wrong is the
campaign, so a ``Book`` watches each campaign's candidates in one global order
and *trips* it:

- **identical content**: within one event-time window (tumbling, aligned to
  the epoch) the campaign has at least ``min_messages`` candidates and one
  content fingerprint covers at least ``max_share`` of them. Only personalised
  triggers are checked (a promotion is the same for everyone by design);
- **volume**: its candidates in the window exceed ``volume_factor`` times the
  median of its own earlier windows within ``volume_history`` (and at least
  ``min_messages``). A campaign with no earlier window, a launch, never trips
  on volume.

The order is the key ``(deadline, message_id)`` over all partitions, so a trip
happens at the same candidate offline and live, whatever the lag: the caller
(``streams.core.gate``) feeds the book strictly in that order.

Fingerprints are counted with a fixed set of counters per window (Misra-Gries):
memory stays constant however personalised a campaign is, and a fingerprint's
count is under-estimated by at most ``n / (COUNTERS + 1)``; the same order
gives the same counts, so determinism is kept.

Ops commands (``release``, ``kill``, ``resume``) are records with an effective
event time, applied in the same order: the book holds no wall clock.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.core.clock import NEVER
from streams.core.policy import Blast

COUNTERS = 64
"""Fingerprint counters kept per campaign window (see the module's docstring)."""

Command = Literal["release", "kill", "resume"]
COMMANDS: tuple[Command, ...] = ("release", "kill", "resume")


def fingerprint(trigger: str, skus: tuple[str, ...] | None, personalised: Iterable[str]) -> str:
    """The content a personalised message carries, as it would be sent (after rewrites):
    its sorted SKUs. Empty for triggers that are not checked for identical content and
    for a message with no SKU left."""
    if trigger not in personalised or not skus:
        return ""
    joined = "\x1f".join(sorted(set(skus)))
    return hashlib.blake2b(joined.encode(), digest_size=8).hexdigest() + ":" + _label(skus)


def _label(skus: tuple[str, ...]) -> str:
    """A readable head of the fingerprint for alerts: the first SKUs, sorted."""
    s = sorted(set(skus))
    head = ",".join(s[:3])
    return head if len(s) <= 3 else f"{head},+{len(s) - 3}"


def label_of(fp: str) -> str:
    return fp.partition(":")[2] or fp


@dataclass(slots=True)
class Trip:
    """Why and where a campaign tripped: what every alert names."""

    campaign: str
    at_ms: int  # the deadline of the candidate that tripped it (its effective time)
    message_id: str
    kind: Literal["share", "volume"]
    window_start: int
    count: int  # candidates in the window, the tripping one included
    fingerprint: str  # the top fingerprint ("" for a volume trip of unchecked triggers)
    top: int  # candidates carrying it (a lower bound, see COUNTERS)
    median: float  # volume: the median of earlier windows
    held: int = 0  # candidates held since

    @property
    def share(self) -> float:
        return self.top / self.count if self.count else 0.0

    def summary(self) -> str:
        if self.kind == "share":
            return (
                f"{self.top} of {self.count} candidates in the window carry the same content "
                f"[{label_of(self.fingerprint)}] ({self.share:.0%})"
            )
        return (
            f"{self.count} candidates in the window, more than {self.count / self.median:.1f}x "
            f"the median {self.median:g} of its earlier windows"
        )


@dataclass(slots=True)
class Order:
    """An ops command as the book applies it."""

    campaign: str
    command: Command
    effective_ms: int
    seq: int
    by: str
    reason: str


@dataclass(slots=True)
class CampaignState:
    window_start: int = NEVER
    count: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    past: deque[tuple[int, int]] = field(default_factory=deque)  # (window start, count)
    trip: Trip | None = None
    killed: Order | None = None
    trips: int = 0
    last_seen: int = NEVER


Verdict = Literal["pass", "hold", "kill"]


class Book:
    """Every campaign's counts, trips and ops state; fed in global key order."""

    def __init__(self, blast: Blast) -> None:
        self.blast = blast
        self.personalised = frozenset(blast.personalised)
        self.campaigns: dict[str, CampaignState] = {}
        self.trips: list[Trip] = []  # every trip so far, for alerts and reports
        self.orders: list[Order] = []  # every command applied, for audit
        self.changed: set[str] = set()  # campaigns changed since the worker last saved them
        self.dropped: set[str] = set()  # campaigns forgotten since then
        self.fresh: list[Trip] = []  # trips not yet alerted on (the caller takes them)

    def admit(self, campaign: str, deadline: int, message_id: str, created_at: int,
              fp: str) -> Verdict:  # fmt: skip
        """Count one candidate (in key order) and say what becomes of it."""
        st = self.campaigns.get(campaign)
        if st is None:
            st = self.campaigns[campaign] = CampaignState()
        self.changed.add(campaign)
        self.dropped.discard(campaign)
        st.last_seen = max(st.last_seen, created_at)
        if st.killed is not None:
            return "kill"
        self._count(st, created_at, fp)
        if st.trip is not None:
            st.trip.held += 1
            return "hold"
        trip = self._check(campaign, st, deadline, message_id)
        if trip is None:
            return "pass"
        st.trip = trip
        st.trips += 1
        trip.held = 1
        self.trips.append(trip)
        self.fresh.append(trip)
        return "hold"

    def _count(self, st: CampaignState, created_at: int, fp: str) -> None:
        w = self.blast.window
        start = created_at - created_at % w
        if start > st.window_start:
            if st.count:
                st.past.append((st.window_start, st.count))
            floor = start - self.blast.volume_history
            while st.past and st.past[0][0] < floor:
                st.past.popleft()
            st.window_start, st.count, st.counters = start, 0, {}
        elif start < st.window_start:
            # Created in an earlier window than the one counting (a late trigger): it
            # counts where the campaign is now, so a trip never reaches back in time.
            pass
        st.count += 1
        if fp:
            c = st.counters
            if fp in c:
                c[fp] += 1
            elif len(c) < COUNTERS:
                c[fp] = 1
            else:  # Misra-Gries: every counter loses one, the empty ones go
                for k in list(c):
                    c[k] -= 1
                    if c[k] == 0:
                        del c[k]

    def _check(self, campaign: str, st: CampaignState, deadline: int,
               message_id: str) -> Trip | None:  # fmt: skip
        b = self.blast
        if st.count < b.min_messages:
            return None
        if st.counters:
            fp, top = max(st.counters.items(), key=lambda kv: (kv[1], kv[0]))
            if top >= b.max_share * st.count:
                return Trip(campaign, deadline, message_id, "share", st.window_start, st.count,
                            fp, top, 0.0)  # fmt: skip
        if st.past:
            med = _median([n for _s, n in st.past])
            if st.count > b.volume_factor * med:
                fp, top = ("", 0)
                if st.counters:
                    fp, top = max(st.counters.items(), key=lambda kv: (kv[1], kv[0]))
                return Trip(campaign, deadline, message_id, "volume", st.window_start, st.count,
                            fp, top, med)  # fmt: skip
        return None

    def apply(self, order: Order) -> CampaignState:
        """An ops command at its effective time (the caller decides what was held)."""
        st = self.campaigns.get(order.campaign)
        if st is None:
            st = self.campaigns[order.campaign] = CampaignState()
        self.changed.add(order.campaign)
        self.dropped.discard(order.campaign)
        self.orders.append(order)
        if order.command == "release":
            # Ops say the content is intended: the trip ends and the window starts over,
            # so the same content does not trip it again at the next candidate.
            st.trip = None
            st.count, st.counters = 0, {}
        elif order.command == "kill":
            st.killed = order
            st.trip = None
        else:
            st.killed = None
        return st

    def expire(self, now_ms: int) -> int:
        """Forget campaigns quiet for longer than their volume history: nothing of them
        is counted any more (a candidate that comes back starts a window as a kept
        state would, its earlier windows all past the history), and a journey that
        names every message its own campaign must not grow the book for good. A tripped
        or killed campaign is kept: ops have to see it. Gives how many were dropped."""
        floor = now_ms - self.blast.volume_history - self.blast.window
        gone = [
            c for c, st in self.campaigns.items()
            if st.last_seen < floor and st.trip is None and st.killed is None
        ]  # fmt: skip
        for c in gone:
            del self.campaigns[c]
            self.changed.discard(c)
            self.dropped.add(c)
        return len(gone)

    def tripped(self, campaign: str) -> Trip | None:
        st = self.campaigns.get(campaign)
        return None if st is None else st.trip

    # ------------------------------------------------------------ durable form (worker)

    def row(self, campaign: str) -> list[Any]:
        st = self.campaigns[campaign]
        t, k = st.trip, st.killed
        return [
            st.window_start,
            st.count,
            list(st.counters.items()),
            [list(p) for p in st.past],
            None if t is None else [t.campaign, t.at_ms, t.message_id, t.kind, t.window_start,
                                    t.count, t.fingerprint, t.top, t.median, t.held],
            None if k is None else [k.campaign, k.command, k.effective_ms, k.seq, k.by, k.reason],
            st.trips,
            st.last_seen,
        ]  # fmt: skip

    def load(self, campaign: str, row: list[Any]) -> None:
        ws, count, counters, past, trip, killed, trips, last_seen = row
        st = CampaignState(ws, count, dict(counters), deque((a, b) for a, b in past))
        if trip is not None:
            st.trip = Trip(*trip)
            self.trips.append(st.trip)
        if killed is not None:
            st.killed = Order(*killed)
        st.trips, st.last_seen = trips, last_seen
        self.campaigns[campaign] = st


def alert_of(campaign: str, st: CampaignState) -> dict[str, Any]:
    """What ops see of a tripped or killed campaign: the alert's fields."""
    out: dict[str, Any] = {"campaign": campaign, "state": "running"}
    t, k = st.trip, st.killed
    if t is not None:
        out.update(
            state="tripped",
            kind=t.kind,
            since_ms=t.at_ms,
            message_id=t.message_id,
            fingerprint=label_of(t.fingerprint),
            share=round(t.share, 3),
            count=t.count,
            held=t.held,
            why=t.summary(),
        )
    if k is not None:
        out.update(state="killed", since_ms=k.effective_ms, by=k.by, reason=k.reason)
    return out


def _median(values: list[int]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2
