"""``generate --profile realistic --holds``: quiet-hours and cap cases across six time
zones, with a truth written from how each case was built, decided exactly by an
offline replay under ``policies/holds.toml``; the realistic cases decide as before."""

from __future__ import annotations

from pathlib import Path

from streams.core.policy import DEFAULT_POLICY, load_policy
from streams.offline.holds import ZONES
from streams.offline.report import accuracy, collect, read_truth, verdicts
from streams.offline.scenarios import write_realistic

ROOT = Path(__file__).resolve().parents[3]


def test_hold_cases_match_their_truth_in_six_zones(tmp_path: Path) -> None:
    history, truth = tmp_path / "h.jsonl", tmp_path / "h.truth.jsonl"
    write_realistic(history, truth, 2_000, seed=13, holds=True)
    policy = load_policy(ROOT / "policies" / "holds.toml")
    got, summary = collect(history, policy, 8)
    assert not summary.failed and not summary.unreadable
    want = read_truth(truth)
    acc = {a.rule: a for a in accuracy(verdicts(got.decisions), want)}
    for rule in ("quiet_hours_expired", "cap_exceeded", "cart_already_purchased"):
        a = acc[rule]
        assert (a.precision, a.recall) == (1.0, 1.0), (rule, a.misses[:5], a.false_positives[:5])
    assert verdicts(got.decisions) == want  # sends too
    held = [d for d in got.decisions if d.held_for == "quiet_hours"]
    assert len(held) > 200
    zones = {z for z in ZONES if any(z in (d.reason or "") for d in held)}
    assert len(zones) == 6  # expiries name the zone the window was read in


def test_the_hold_cases_change_nothing_under_the_default_policy_but_their_own(
    tmp_path: Path,
) -> None:
    history, truth = tmp_path / "h.jsonl", tmp_path / "h.truth.jsonl"
    write_realistic(history, truth, 300, seed=13, holds=True)
    got, _ = collect(history, DEFAULT_POLICY, 4)
    assert not any(d.held_for for d in got.decisions)
