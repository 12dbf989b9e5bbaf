"""Policy versions applied live: which version decides which candidate, and what may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contract import decode as codec
from streams.contract.history import write_history
from streams.core.clock import iso, to_ms
from streams.core.engine import Engine
from streams.core.outcomes import Decided, Output
from streams.core.policy import DEFAULT_POLICY, Policy, policy_from_mapping
from streams.core.policy_history import (
    PolicyHistory,
    PolicyRecord,
    as_mapping,
    check_live,
    fixed_changes,
    history_from_file,
)
from streams.core.store import MemoryStore
from streams.errors import PolicyError
from streams.offline.replay import replay_offline
from tests.helpers import at, msg

LOOSE = policy_from_mapping({"version": "loose-2", "rules": {"frequency_cap": {"limit": 10}}})
NO_CAP = policy_from_mapping(
    {"version": "no-cap-3", "rules": {"frequency_cap": {"enabled": False}}}
)


def _record(seq: int, policy: Policy, effective: str, **kw: Any) -> PolicyRecord:
    ms = to_ms_at(effective)
    return PolicyRecord(
        seq=seq,
        version=policy.version,
        effective_at=iso(ms),
        effective_ms=ms,
        applied_by="ops",
        applied_at=iso(ms - 60_000),
        policy=as_mapping(policy),
        **kw,
    )


def to_ms_at(hms: str) -> int:
    from datetime import datetime

    return to_ms(datetime.fromisoformat(at(hms).replace("Z", "+00:00")))


@pytest.mark.parametrize(
    ("created", "version"),
    [
        ("09:59", "default-1"),  # before any applied version: the workers' own file
        ("10:25", "loose-2"),  # exactly at its effective time: the new version
        ("10:40", "loose-2"),
        ("11:00", "no-cap-3"),
        ("12:00", "loose-2"),  # rolled back to loose-2 at 11:30
    ],
)
def test_the_version_in_force_at_a_candidates_created_at_decides_it(
    created: str, version: str
) -> None:
    hist = PolicyHistory(DEFAULT_POLICY)
    # applied out of effective order on purpose: effective time orders them, not seq
    assert hist.add(_record(2, NO_CAP, "11:00"))
    assert hist.add(_record(1, LOOSE, "10:25"))
    assert hist.add(_record(3, LOOSE, "11:30", rollback_of="no-cap-3"))
    assert not hist.add(_record(3, LOOSE, "11:30"))  # read twice: taken once
    assert hist.at(to_ms_at(created)).version == version


@pytest.mark.parametrize(
    ("change", "fixed"),
    [
        ({"rules": {"frequency_cap": {"enabled": False}}}, []),
        ({"rules": {"stale_trigger": {"mode": "monitor", "max_age": "2h"}}}, []),
        ({"rules": {"win_back_active_customer": {"window": "10d"}}}, []),
        ({"settle": {"abandoned_cart": "10m"}}, ["settle"]),
        ({"state": {"max_held": 5}}, ["state"]),
        ({"time": {"max_clock_skew": "2h"}}, ["time"]),
        ({"rules": {"frequency_cap": {"window": "48h"}}}, ["rules.frequency_cap.window"]),
        (
            {"rules": {"duplicate_message": {"retention": "20d"}}},
            ["rules.duplicate_message.retention"],
        ),
    ],
)
def test_only_what_a_decision_reads_may_change_live(
    change: dict[str, Any], fixed: list[str]
) -> None:
    new = policy_from_mapping({"version": "v2", **change})
    assert fixed_changes(DEFAULT_POLICY, new) == fixed
    if fixed:
        with pytest.raises(PolicyError, match=fixed[0].replace(".", r"\.")):
            check_live(DEFAULT_POLICY, new)
    else:
        check_live(DEFAULT_POLICY, new)


def test_a_version_that_would_change_state_is_not_taken_and_says_why() -> None:
    hist = PolicyHistory(DEFAULT_POLICY)
    slow = policy_from_mapping({"version": "slow-9", "settle": {"promotion": "1h"}})
    assert not hist.add(_record(1, slow, "10:00"))
    assert hist.rejected and hist.rejected[0][0] == 1 and "settle" in hist.rejected[0][1]
    assert hist.at(to_ms_at("11:00")).version == "default-1"


def _promotions() -> list[dict[str, Any]]:
    # four promotions within the 24h window of frequency_cap (limit 3): the 4th is capped
    times = ("10:00", "10:10", "10:20", "10:30")
    return [msg(f"m{i}", "promotion", t, payload={"offer": i}) for i, t in enumerate(times)]


def _decide(records: list[dict[str, Any]], hist: PolicyHistory) -> dict[str, tuple[str, str]]:
    engine = Engine(DEFAULT_POLICY, MemoryStore(), history=hist)
    outs: list[Output] = []
    for rec in records:
        raw = orjson.dumps(rec["value"])
        ms = to_ms_at(rec["value"]["created_at"])
        parsed = codec.decode("outbound", raw, ms, 0, DEFAULT_POLICY)
        assert isinstance(parsed, codec.Parsed)
        outs += engine.ingest(0, "outbound", parsed.customer_id, parsed.event_ms, parsed.fact, ms)
        outs += engine.release(0, 0)
    outs += engine.flush(0)
    decided = [o for o in outs if isinstance(o, Decided)]
    return {o.candidate.message_id: (o.decision.action, o.policy) for o in decided}


def test_a_rule_loosened_live_applies_from_its_effective_time_and_decisions_name_it() -> None:
    before = _decide(_promotions(), PolicyHistory(DEFAULT_POLICY))
    assert before["m3"] == ("suppress", "default-1")
    hist = PolicyHistory(DEFAULT_POLICY)
    hist.add(_record(1, LOOSE, "10:25"))
    after = _decide(_promotions(), hist)
    assert after == {
        "m0": ("send", "default-1"),
        "m1": ("send", "default-1"),
        "m2": ("send", "default-1"),
        "m3": ("send", "loose-2"),
    }


def test_offline_replay_with_the_policy_history_file_decides_as_the_workers_would(
    tmp_path: Path,
) -> None:
    history = tmp_path / "h.jsonl"
    write_history(history, _promotions())
    versions = tmp_path / "policy.jsonl"
    versions.write_bytes(orjson.dumps(_record(1, LOOSE, "10:25").model_dump(mode="json")) + b"\n")

    def replay(hist: PolicyHistory | None) -> dict[str, str]:
        out = tmp_path / "out.jsonl"
        with open(out, "wb") as fh:
            replay_offline(history, DEFAULT_POLICY, fh, history=hist)
        return {d["message_id"]: d["action"] for d in map(orjson.loads, out.read_bytes().split())}

    assert replay(None)["m3"] == "suppress"
    assert replay(history_from_file(DEFAULT_POLICY, str(versions)))["m3"] == "send"


def test_a_policy_history_file_with_a_version_workers_would_refuse_is_an_error(
    tmp_path: Path,
) -> None:
    bad = policy_from_mapping({"version": "bad", "state": {"max_held": 5}})
    path = tmp_path / "policy.jsonl"
    path.write_bytes(orjson.dumps(_record(1, bad, "10:00").model_dump(mode="json")) + b"\n")
    with pytest.raises(PolicyError, match="state"):
        history_from_file(DEFAULT_POLICY, str(path))
