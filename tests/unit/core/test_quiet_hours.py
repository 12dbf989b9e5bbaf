"""Quiet hours, table-driven: windows across midnight, daylight saving in New York and
Berlin, where the zone comes from, the spread, rules re-run at release, expiry, and
the transactional exemption."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.clock import iso, to_ms
from streams.core.policy import Policy, policy_from_mapping
from streams.core.quiet_hours import TZDATA, edge, spread_of, window_end, zone
from streams.offline.replay import replay_offline
from tests.helpers import cart, msg, purchase, session, write_history


def utc(text: str) -> int:
    return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


# ---------------------------------------------------------------- the window and DST

WINDOW_CASES = [
    # (name, zone, instant (UTC), start, end, expected end of its window (UTC) or None)
    (
        "late_evening_is_quiet_until_next_morning",
        "Europe/Berlin",
        "2026-11-20T22:00:00Z",
        "21:00",
        "08:00",
        "2026-11-21T07:00:00Z",
    ),
    (
        "small_hours_are_quiet_until_the_same_morning",
        "Europe/Berlin",
        "2026-11-21T02:00:00Z",
        "21:00",
        "08:00",
        "2026-11-21T07:00:00Z",
    ),
    (
        "the_window_end_itself_is_not_quiet",
        "Europe/Berlin",
        "2026-11-21T07:00:00Z",
        "21:00",
        "08:00",
        None,
    ),
    (
        "the_window_start_itself_is_quiet",
        "Europe/Berlin",
        "2026-11-20T20:00:00Z",
        "21:00",
        "08:00",
        "2026-11-21T07:00:00Z",
    ),
    ("midday_is_not_quiet", "America/New_York", "2026-11-20T17:00:00Z", "21:00", "08:00", None),
    (
        "a_window_within_one_day",
        "UTC",
        "2026-11-20T13:30:00Z",
        "13:00",
        "14:00",
        "2026-11-20T14:00:00Z",
    ),
    # spring forward, New York 2026-03-08: 02:00 -> 03:00 EDT. An end at 02:30 does not
    # exist that day: the next minute that does is 03:00 EDT (07:00 UTC)
    (
        "new_york_spring_gap_moves_the_end_to_the_next_minute",
        "America/New_York",
        "2026-03-08T06:30:00Z",
        "21:00",
        "02:30",
        "2026-03-08T07:00:00Z",
    ),
    # Berlin 2026-03-29: 02:00 -> 03:00 CEST; end at 02:30 -> 03:00 CEST (01:00 UTC)
    (
        "berlin_spring_gap_moves_the_end_to_the_next_minute",
        "Europe/Berlin",
        "2026-03-29T00:30:00Z",
        "21:00",
        "02:30",
        "2026-03-29T01:00:00Z",
    ),
    # fall back, New York 2026-11-01: 01:00-02:00 happens twice; an end at 01:30 is the
    # first 01:30 (EDT, 05:30 UTC)
    (
        "new_york_autumn_repeat_ends_at_the_first",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        "21:00",
        "01:30",
        "2026-11-01T05:30:00Z",
    ),
    # ... and the second 01:10 (EST, 06:10 UTC) is after that end: not quiet any more
    (
        "new_york_second_pass_of_the_repeat_is_not_quiet",
        "America/New_York",
        "2026-11-01T06:10:00Z",
        "21:00",
        "01:30",
        None,
    ),
    # Berlin 2026-10-25: 02:00-03:00 twice; end 02:30 is the first (CEST, 00:30 UTC)
    (
        "berlin_autumn_repeat_ends_at_the_first",
        "Europe/Berlin",
        "2026-10-24T23:00:00Z",
        "21:00",
        "02:30",
        "2026-10-25T00:30:00Z",
    ),
    # a start in the spring gap: from the first minute that exists (03:00 EDT) it is quiet
    (
        "a_start_inside_the_gap_begins_at_the_next_minute",
        "America/New_York",
        "2026-03-08T07:00:00Z",
        "02:30",
        "06:00",
        "2026-03-08T10:00:00Z",
    ),
]


@pytest.mark.parametrize(("name", "tz", "at", "start", "end", "expected"), WINDOW_CASES,
                         ids=[c[0] for c in WINDOW_CASES])  # fmt: skip
def test_window_end(
    name: str, tz: str, at: str, start: str, end: str, expected: str | None
) -> None:
    from streams.core.quiet_hours import parse_clock

    z = zone(tz)
    assert z is not None
    got = window_end(utc(at), z, parse_clock(start), parse_clock(end))
    assert got == (None if expected is None else utc(expected))


def test_an_edge_that_occurs_twice_is_the_first() -> None:
    z = zone("Europe/Berlin")
    assert z is not None
    assert iso(edge(datetime(2026, 10, 25).date(), 2 * 60 + 30, z)) == "2026-10-25T00:30:00Z"


def test_the_spread_is_deterministic_and_inside_its_bounds() -> None:
    spread = 30 * 60_000
    offsets = [spread_of(f"m-{i}", spread) for i in range(2000)]
    assert offsets == [spread_of(f"m-{i}", spread) for i in range(2000)]
    assert 0 <= min(offsets) and max(offsets) < spread
    # spread out: no minute of the half hour gets more than a few times its share
    per_minute = [0] * 30
    for o in offsets:
        per_minute[o // 60_000] += 1
    assert max(per_minute) < 3 * 2000 / 30
    assert spread_of("m-1", 0) == 0


# ---------------------------------------------------------------- decisions, offline

QUIET: Policy = policy_from_mapping(
    {"quiet_hours": {"channels": ["email", "sms"], "default_timezone": "Europe/Berlin"}}
)


def decide(tmp_path: Path, records: list[dict[str, Any]], policy: Policy = QUIET) -> dict[str, Any]:
    path = tmp_path / "h.jsonl"
    write_history(path, records)
    out = tmp_path / "d.jsonl"
    with open(out, "wb") as fh:
        replay_offline(path, policy, fh, partitions=2)
    return {d["message_id"]: d for d in map(orjson.loads, out.read_bytes().splitlines())}


def tz_msg(mid: str, created: str, tz: str | None = None, **kw: Any) -> dict[str, Any]:
    rec = msg(mid, "promotion", created, payload={"template": mid}, **kw)
    if tz is not None:
        rec["value"]["context"] = {"timezone": tz}
    return rec


def tz_session(when: str, tz: str) -> dict[str, Any]:
    rec = session(when)
    rec["value"]["timezone"] = tz
    return rec


SPREAD_M = spread_of("m", 30 * 60_000)

DECISION_CASES = [
    # (name, records, (action, rule, held_for, send_at or None: the deadline))
    (
        "evening_in_the_default_zone_waits_for_the_morning",
        [tz_msg("m", "2026-11-20T21:30:00Z")],
        ("send", None, "quiet_hours", utc("2026-11-21T07:00:00Z") + SPREAD_M),
    ),
    (
        "the_zone_from_context_wins",  # 21:30 UTC is 16:30 in New York: not quiet
        [tz_msg("m", "2026-11-20T21:30:00Z", tz="America/New_York")],
        ("send", None, None, None),
    ),
    (
        "the_zone_from_the_latest_session_before_the_deadline",
        [
            tz_session("2026-11-20T12:00:00Z", "America/New_York"),
            tz_msg("m", "2026-11-21T03:00:00Z"),
        ],  # 22:00 in New York
        ("send", None, "quiet_hours", utc("2026-11-21T13:00:00Z") + SPREAD_M),
    ),
    (
        "a_session_after_the_deadline_does_not_set_the_zone",
        [
            tz_msg("m", "2026-11-20T12:00:00Z"),
            tz_session("2026-11-20T12:30:00Z", "Asia/Tokyo"),
        ],  # 21:00 Tokyo, but after
        ("send", None, None, None),
    ),
    (
        "transactional_is_exempt",
        [tz_msg("m", "2026-11-20T23:00:00Z", category="transactional")],
        ("send", None, None, None),
    ),
    (
        "a_channel_not_listed_is_not_held",
        [tz_msg("m", "2026-11-20T23:00:00Z", channel="push")],
        ("send", None, None, None),
    ),
    (
        "held_past_max_hold_expires",  # cart: created 21:30 Berlin, 6 h max: 03:30 < 08:00
        [cart("m", "2026-11-20T20:30:00Z", "2026-11-20T20:20:00Z")],
        ("suppress", "quiet_hours_expired", "quiet_hours", utc("2026-11-21T02:30:00Z")),
    ),
]


@pytest.mark.parametrize(("name", "records", "expected"), DECISION_CASES,
                         ids=[c[0] for c in DECISION_CASES])  # fmt: skip
def test_quiet_hours_decisions(
    tmp_path: Path, name: str, records: list[dict[str, Any]], expected: tuple[Any, ...]
) -> None:
    d = decide(tmp_path, [*records, session("2026-11-23T00:00:00Z")])["m"]
    action, rule, held_for, send_at = expected
    assert (d["action"], d["rule"], d.get("held_for")) == (action, rule, held_for)
    if send_at is not None:
        assert d["send_at"] == iso(send_at)


def test_a_purchase_during_the_night_still_stops_the_cart_mail(tmp_path: Path) -> None:
    """Created 20:10 UTC (21:10 Berlin), due 20:15: held to 08:00 + spread. Bought at
    01:00 UTC: decided at release, every rule as of then."""
    policy = policy_from_mapping(
        {"quiet_hours": {"channels": ["email"], "default_timezone": "Europe/Berlin",
                         "max_hold": {"abandoned_cart": "12h"}}}
    )  # fmt: skip
    got = decide(tmp_path, [
        cart("m", "2026-11-20T20:10:00Z", "2026-11-20T20:05:00Z"),
        purchase("2026-11-21T01:00:00Z"),
        session("2026-11-23T00:00:00Z"),
    ], policy)  # fmt: skip
    assert (got["m"]["action"], got["m"]["rule"]) == ("suppress", "cart_already_purchased")
    assert got["m"]["held_for"] == "quiet_hours"


def test_off_by_default_changes_nothing(tmp_path: Path) -> None:
    d = decide(tmp_path, [tz_msg("m", "2026-11-20T23:00:00Z"), session("2026-11-23T00:00:00Z")],
               Policy())  # fmt: skip
    assert (d["m"]["action"], d["m"].get("held_for")) == ("send", None)
    assert d["m"]["send_at"] == "2026-11-20T23:00:00Z"


def test_the_send_queue_record_names_the_zone_its_source_and_tzdata() -> None:
    from streams.contract import decode, render
    from streams.core.engine import Engine
    from streams.core.outcomes import Decided
    from streams.core.store import MemoryStore
    from streams.core.vocabulary import INPUT_KINDS
    from tests.helpers import feed

    engine = Engine(QUIET, MemoryStore())
    for t in INPUT_KINDS:
        engine.clock(0).set_idle(t, True)
    feed(engine, tz_msg("m", "2026-11-20T21:30:00Z"))
    feed(engine, session("2026-11-22T00:00:00Z"))
    (d,) = [o for o in engine.release(0, 0) if isinstance(o, Decided)]
    sanity = orjson.loads(render.send_value(d, "p1"))["sanity"]
    assert sanity["held_for"] == "quiet_hours"
    assert sanity["timezone"] == {"zone": "Europe/Berlin", "source": "default", "tzdata": TZDATA}
    assert sanity["send_at"] == iso(utc("2026-11-21T07:00:00Z") + SPREAD_M)
    assert decode  # the module the worker reads records with


def test_an_unknown_zone_is_a_dead_letter_naming_it() -> None:
    from streams.contract import decode
    from streams.core.policy import DEFAULT_POLICY

    rec = tz_msg("m", "2026-11-20T21:30:00Z", tz="Mars/Olympus")
    got = decode.decode("outbound", orjson.dumps(rec["value"]), 0, 0, DEFAULT_POLICY)
    assert isinstance(got, decode.Unreadable)
    assert (
        got.error == "context.timezone: unknown IANA time zone 'Mars/Olympus' (e.g. Europe/Berlin)"
    )


def test_a_policy_with_an_unknown_default_zone_is_refused() -> None:
    from streams.errors import PolicyError

    with pytest.raises(PolicyError, match="unknown IANA time zone 'CEST'"):
        policy_from_mapping({"quiet_hours": {"default_timezone": "CEST"}})
    assert datetime(2026, 1, 1, tzinfo=UTC)  # keeps the import honest


# ---------------------------------------------------------------- found by review

SMS_NIGHTS: dict[str, Any] = {
    "quiet_hours": {"channels": ["sms"], "start": "21:00", "end": "08:00", "spread": "0s"},
    "rules": {"frequency_cap": {"enabled": False}},
}


def sms(mid: str, created: str) -> dict[str, Any]:
    return msg(mid, "promotion", created, channel="sms", payload={"template": mid})


def test_a_cap_deferral_into_the_night_waits_for_the_morning(tmp_path: Path) -> None:
    pol = policy_from_mapping(
        {**SMS_NIGHTS, "caps": [{"name": "sms", "channels": ["sms"], "limit": 1,
                                  "window": "2h", "overflow": "defer"}]}
    )  # fmt: skip
    got = decide(tmp_path, [sms("a", "19:30"), sms("m", "20:00"), session("2026-11-23T00:00:00Z")],
                 pol)  # fmt: skip
    # deferred to 21:30 by the cap, which is night: held again until 08:00
    assert (got["m"]["action"], got["m"]["held_for"]) == ("send", "quiet_hours")
    assert got["m"]["send_at"] == "2026-11-21T08:00:00Z"


def test_sends_released_in_the_morning_count_toward_the_day_cap(tmp_path: Path) -> None:
    got = decide(tmp_path, [sms("a", "07:00"), sms("b", "07:10"), sms("c", "07:20"),
                            sms("m", "21:00"), session("2026-11-23T00:00:00Z")],
                 policy_from_mapping({"quiet_hours": SMS_NIGHTS["quiet_hours"]}))  # fmt: skip
    # a, b, c went at 08:00 (before: 07:xx was quiet); m, due at 21:00, is held to the next
    # morning and is the fourth SMS within 24 h before its created_at
    assert (got["m"]["action"], got["m"]["rule"]) == ("suppress", "frequency_cap")


def test_the_zone_does_not_depend_on_the_order_sessions_are_read(tmp_path: Path) -> None:
    ny = tz_session("08:00", "America/New_York")
    later = [tz_session(f"{10 + i}:00", "Europe/Berlin") for i in range(9)]
    cand = sms("m", "09:00")  # 04:00 in New York
    pol = policy_from_mapping(SMS_NIGHTS)
    end = session("2026-11-23T00:00:00Z")
    in_time = decide(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path,
                     [ny, cand, *later, end], pol)  # fmt: skip
    read_first = decide(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path,
                        [ny, *later, cand, end], pol)  # fmt: skip
    assert in_time["m"] == read_first["m"]
    assert in_time["m"]["send_at"] == "2026-11-20T13:00:00Z"  # 08:00 in New York


def test_a_time_in_the_repeated_hour_after_a_start_edge_is_quiet() -> None:
    """New York, 2026-11-01, window 01:30-06:00: the first 01:30 (05:30Z) opens it, so
    01:10 EST (06:10Z, the repeated hour) is inside."""
    z = zone("America/New_York")
    assert z is not None
    assert window_end(utc("2026-11-01T06:10:00Z"), z, 90, 360) == utc("2026-11-01T11:00:00Z")


@pytest.mark.parametrize("name", ["America", "Etc", "Europe/__pycache__", "Europe/../UTC",
                                  "x" * 64, "CEST", "europe/berlin"])  # fmt: skip
def test_names_that_are_not_zones_are_dead_letters(name: str) -> None:
    from streams.contract import decode
    from streams.core.policy import DEFAULT_POLICY

    rec = tz_session("2026-11-20T10:00:00Z", name)
    got = decode.decode("sessions", orjson.dumps(rec["value"]), utc("2026-11-20T10:00:00Z"), 0,
                        DEFAULT_POLICY)  # fmt: skip
    assert isinstance(got, decode.Unreadable) and "unknown IANA time zone" in got.error


@pytest.mark.parametrize(("tz", "created"), [("Pacific/Apia", "2011-12-30T08:00:00Z"),
                                             ("UTC", "9999-12-31T22:00:00Z")])  # fmt: skip
def test_a_day_that_never_happened_or_the_end_of_the_calendar_is_decided(
    tmp_path: Path, tz: str, created: str
) -> None:
    got = decide(tmp_path, [tz_msg("m", created, tz=tz, channel="sms")], SMS_ON)
    assert got["m"]["action"] in ("send", "suppress")


SMS_ON: Policy = policy_from_mapping(SMS_NIGHTS)


def test_a_deferred_send_queue_record_matches_its_schema() -> None:
    from schemas.models import Sanity
    from streams.contract import render
    from streams.core.engine import Engine
    from streams.core.outcomes import Decided
    from streams.core.store import MemoryStore
    from streams.core.vocabulary import INPUT_KINDS
    from tests.helpers import feed

    pol = policy_from_mapping({"caps": [{"name": "sms", "channels": ["sms"], "limit": 1,
                                         "window": "1h", "overflow": "defer"}]})  # fmt: skip
    engine = Engine(pol, MemoryStore())
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, True)
    for r in (sms("a", "10:00"), sms("b", "10:10")):
        feed(engine, r)
    sent = [o for o in engine.flush(0) if isinstance(o, Decided)]
    sanities = [orjson.loads(render.send_value(o, "v1"))["sanity"] for o in sent]
    assert [s.get("held_for") for s in sanities] == [None, "cap"]
    for s in sanities:
        Sanity.model_validate(s)
