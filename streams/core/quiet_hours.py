"""Quiet hours: no marketing SMS at 3 a.m. in the customer's time zone.

A candidate on a quiet channel whose deadline falls inside the customer's
local quiet window is held until the window ends, plus a spread that is the
same for the same ``message_id`` (so the morning is not one burst), and is then
decided with every rule as of that release: a purchase made during the night
still stops the cart mail. A hold that would last past ``max_hold`` after
``created_at`` ends there instead, with ``quiet_hours_expired``.

Local time comes from ``zoneinfo`` over the pinned ``tzdata`` package, never
the host's database, so offline and every worker read the same rules (the
version is named on each decision). Daylight saving: a window edge that does
not exist that day (spring forward) moves to the next minute that does; one
that occurs twice (fall back) is the first.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MS = 86_400_000


def _tzdata_version() -> str:
    try:
        return importlib.metadata.version("tzdata")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - pinned dependency
        return "system"


TZDATA = _tzdata_version()
"""The time zone database version decisions are made with."""


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def known_zone(name: str) -> bool:
    """An IANA name the pinned database knows (``Europe/Berlin``; not ``CEST``)."""
    return zone(name) is not None


def spread_of(message_id: str, spread_ms: int) -> int:
    """The message's offset in ``[0, spread_ms)``: from its id, so the same message is
    released at the same moment in every run."""
    if spread_ms <= 0:
        return 0
    digest = hashlib.blake2b(message_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % spread_ms


def parse_clock(text: str) -> int:
    """``"21:00"`` -> minutes after midnight."""
    hh, sep, mm = text.partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2:
        raise ValueError(f"expected a local time like '21:00', got {text!r}")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"expected a local time like '21:00', got {text!r}")
    return h * 60 + m


def edge(day: date, minutes: int, tz: ZoneInfo) -> int:
    """Epoch ms of local wall time ``minutes`` after midnight of ``day``: the next minute
    that exists when it does not (spring forward), the first when it occurs twice."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    for k in range(0, 181):  # no zone skips more than a few hours
        wall = midnight + timedelta(minutes=minutes + k)  # wall-clock arithmetic, fold=0
        back = wall.astimezone(UTC).astimezone(tz)
        if back.replace(tzinfo=None) == wall.replace(tzinfo=None):
            return int(wall.astimezone(UTC).timestamp() * 1000)
    raise ValueError(f"no local time near {minutes} min on {day} in {tz.key}")  # pragma: no cover


def window_end(at_ms: int, tz: ZoneInfo, start: int, end: int) -> int | None:
    """When the quiet window that ``at_ms`` falls in ends (epoch ms); None outside it.
    ``start``/``end``: minutes after local midnight; the window may cross midnight."""
    if start == end:
        return None
    local = datetime.fromtimestamp(at_ms / 1000, tz=tz)
    tod = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    today = local.date()
    if start < end:
        if not start <= tod < end:
            return None
        ends = edge(today, end, tz)
    elif tod >= start:
        ends = edge(today + timedelta(days=1), end, tz)
    elif tod < end:
        ends = edge(today, end, tz)
    else:
        return None
    # in a repeated hour after the window already ended (fall back): not quiet any more
    return ends if ends > at_ms else None
