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
from importlib import resources
from importlib.resources.abc import Traversable
from zoneinfo import ZoneInfo

DAY_MS = 86_400_000


def _tzdata_version() -> str:
    try:
        return importlib.metadata.version("tzdata")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - pinned dependency
        return "system"


TZDATA = _tzdata_version()
"""The time zone database version decisions are made with."""


def _names() -> dict[str, Traversable]:
    """Every zone of the pinned ``tzdata`` package by IANA name, read from the package
    itself: ``zoneinfo.ZoneInfo`` would look at the host's database first, and a worker
    and an offline run on two hosts must read the same rules."""
    out: dict[str, Traversable] = {}
    try:
        root = resources.files("tzdata").joinpath("zoneinfo")
    except ModuleNotFoundError:  # pragma: no cover - a pinned dependency
        return out
    stack: list[tuple[str, Traversable]] = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                if not entry.name.startswith("__"):
                    stack.append((name + "/", entry))
            elif entry.name[:1].isupper() or name in ("UTC", "GMT"):
                with entry.open("rb") as fh:
                    if fh.read(4) == b"TZif":
                        out[name] = entry
    return out


_ZONES = _names()


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The zone of that IANA name in the pinned database; None for any other string."""
    found = _ZONES.get(name)
    if found is None:
        return None
    with found.open("rb") as fh:
        return ZoneInfo.from_file(fh, key=name)


def known_zone(name: str) -> bool:
    """An IANA name the pinned database knows (``Europe/Berlin``; not ``CEST``)."""
    return name in _ZONES


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


@lru_cache(maxsize=65536)  # a window's edges are the same for every message that day
def edge(day: date, minutes: int, tz: ZoneInfo) -> int:
    """Epoch ms of local wall time ``minutes`` after midnight of ``day``: the next minute
    that exists when it does not (spring forward), the first when it occurs twice."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    first = midnight + timedelta(minutes=minutes)  # wall-clock arithmetic, fold=0
    for k in range(0, 24 * 60 + 1):
        wall = first + timedelta(minutes=k)
        back = wall.astimezone(UTC).astimezone(tz)
        if back.replace(tzinfo=None) == wall.replace(tzinfo=None):
            return int(wall.astimezone(UTC).timestamp() * 1000)
    # a whole local day that never happened (Pacific/Apia, 2011-12-30): its instant
    return int(first.astimezone(UTC).timestamp() * 1000)


def window_end(at_ms: int, tz: ZoneInfo, start: int, end: int) -> int | None:
    """When the quiet window that ``at_ms`` falls in ends (epoch ms); None outside it.
    ``start``/``end``: minutes after local midnight; the window may cross midnight.
    Both edges are instants (``edge``), so daylight saving moves them as the contract
    says, and a time in a repeated hour is inside exactly when it is between them."""
    if start == end:
        return None
    try:
        day = datetime.fromtimestamp(at_ms / 1000, tz=tz).date()
        for d in (day - timedelta(days=1), day):
            opens = edge(d, start, tz)
            closes = edge(d if start < end else d + timedelta(days=1), end, tz)
            if opens <= at_ms < closes:
                return closes
    except (OverflowError, ValueError, OSError):
        return None  # a deadline at the end of the calendar: no window is known there
    return None
