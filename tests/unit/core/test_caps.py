"""Caps across channels and categories, table-driven: several caps at once, a deferral
that gets room and one that expires, and competing candidates at the same deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.policy import Policy, policy_from_mapping
from streams.errors import PolicyError
from streams.offline.replay import replay_offline
from tests.helpers import msg, session, write_history

TWO_CAPS = [
    {"name": "any-channel", "limit": 3, "window": "24h"},
    {"name": "sms", "channels": ["sms"], "limit": 1, "window": "24h"},
]


def policy(caps: list[dict[str, Any]]) -> Policy:
    # frequency_cap (per channel) off, so only [[caps]] speak
    return policy_from_mapping({"caps": caps, "rules": {"frequency_cap": {"enabled": False}}})


def promo(mid: str, created: str, channel: str = "email", **kw: Any) -> dict[str, Any]:
    return msg(mid, "promotion", created, channel=channel, payload={"template": mid}, **kw)


def decide(tmp_path: Path, records: list[dict[str, Any]], pol: Policy) -> dict[str, Any]:
    path = tmp_path / "h.jsonl"
    write_history(path, [*records, session("2026-11-30T00:00:00Z")])
    out = tmp_path / "d.jsonl"
    with open(out, "wb") as fh:
        replay_offline(path, pol, fh, partitions=2)
    return {d["message_id"]: d for d in map(orjson.loads, out.read_bytes().splitlines())}


CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]] = [
    (
        "sends_of_every_channel_count_toward_a_cap_that_names_them_all",
        TWO_CAPS,
        [
            promo("a", "10:00", "email"),
            promo("b", "10:01", "push"),
            promo("c", "10:02", "in_app"),
            promo("m", "10:03", "email"),
        ],
        {"m": ("suppress", "cap_exceeded"), "c": ("send", None)},
    ),
    (
        "the_narrower_cap_fills_first",
        TWO_CAPS,
        [promo("a", "10:00", "sms"), promo("m", "10:01", "sms")],
        {"a": ("send", None), "m": ("suppress", "cap_exceeded")},
    ),
    (
        "a_cap_ignores_what_its_filters_leave_out",
        TWO_CAPS,
        [promo("a", "10:00", "sms"), promo("m", "10:01", "email")],
        {"m": ("send", None)},
    ),
    (
        "transactional_is_not_counted_by_a_marketing_cap",
        TWO_CAPS,
        [
            promo("a", "10:00", category="transactional"),
            promo("b", "10:01", category="transactional"),
            promo("c", "10:02", category="transactional"),
            promo("m", "10:03"),
        ],
        {"m": ("send", None)},
    ),
    (
        "the_window_is_rolling",
        [{"name": "daily", "limit": 1, "window": "24h"}],
        [promo("a", "2026-11-19T10:00:00Z"), promo("m", "2026-11-20T10:00:00Z")],  # 24 h later
        {"m": ("send", None)},
    ),
    (
        "competing_candidates_at_the_same_deadline_go_by_message_id",
        [{"name": "one", "limit": 1, "window": "24h"}],
        [promo("m-2", "10:00"), promo("m-1", "10:00")],
        {"m-1": ("send", None), "m-2": ("suppress", "cap_exceeded")},
    ),
    (
        "a_deferred_candidate_goes_when_the_window_has_room",
        [{"name": "one", "limit": 1, "window": "6h", "overflow": "defer", "max_defer": "24h"}],
        [promo("a", "10:00"), promo("m", "11:00")],
        {"a": ("send", None), "m": ("send", None, "cap", "2026-11-20T16:00:00Z")},
    ),
    (
        "a_deferral_past_max_defer_expires",
        [{"name": "one", "limit": 1, "window": "24h", "overflow": "defer", "max_defer": "2h"}],
        [promo("a", "10:00"), promo("m", "11:00")],
        {"m": ("suppress", "cap_deferred_expired", "cap", "2026-11-20T13:00:00Z")},
    ),
    (
        "two_deferred_take_the_slots_in_turn",
        [{"name": "one", "limit": 1, "window": "1h", "overflow": "defer", "max_defer": "24h"}],
        [promo("a", "10:00"), promo("b", "10:10"), promo("c", "10:20")],
        {
            "b": ("send", None, "cap", "2026-11-20T11:00:00Z"),
            "c": ("send", None, "cap", "2026-11-20T12:00:00Z"),
        },
    ),
]


@pytest.mark.parametrize(("name", "caps", "records", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_caps(
    tmp_path: Path,
    name: str,
    caps: list[dict[str, Any]],
    records: list[dict[str, Any]],
    expected: dict[str, Any],
) -> None:
    got = decide(tmp_path, records, policy(caps))
    for mid, want in expected.items():
        d = got[mid]
        assert (d["action"], d["rule"]) == want[:2], (mid, d)
        if len(want) > 2:
            assert (d.get("held_for"), d["send_at"]) == want[2:], (mid, d)


def test_the_reason_names_the_cap_its_count_and_window(tmp_path: Path) -> None:
    from streams.core.engine import Engine
    from streams.core.outcomes import Decided
    from streams.core.store import MemoryStore
    from streams.core.vocabulary import INPUT_KINDS
    from tests.helpers import feed

    engine = Engine(policy(TWO_CAPS), MemoryStore())
    for t in INPUT_KINDS:
        engine.clock(0).set_idle(t, True)
    feed(engine, promo("a", "10:00", "sms"))
    feed(engine, promo("m", "10:05", "sms"))
    decided = [o.decision for o in engine.release(0, 0) if isinstance(o, Decided)]
    assert decided[1].reason == (
        "cap sms: 1 messages were already sent in the 1d before 2026-11-20 10:05 UTC (limit 1)"
    )


def test_caps_need_their_own_names_and_do_not_defer_with_blast_on() -> None:
    with pytest.raises(PolicyError, match="own name"):
        policy([{"name": "a", "limit": 1}, {"name": "a", "limit": 2}])
    with pytest.raises(PolicyError, match="blast"):
        policy_from_mapping({"blast": {"enabled": True},
                             "caps": [{"name": "a", "limit": 1, "overflow": "defer"}]})  # fmt: skip


def test_the_report_shows_holds_and_suppressions_per_cap(tmp_path: Path) -> None:
    from streams.offline.report import collect, render

    path = tmp_path / "h.jsonl"
    pol = policy(TWO_CAPS)
    write_history(path, [promo("a", "10:00", "sms"), promo("m", "10:01", "sms"),
                         session("2026-11-30T00:00:00Z")])  # fmt: skip
    got, summary = collect(path, pol, 2)
    page = render("h", got, summary, pol)
    assert "<h3>Suppressions per cap</h3>" in page
    assert "<tr><td>sms</td><td>cap_exceeded</td><td class=n>1</td></tr>" in page
