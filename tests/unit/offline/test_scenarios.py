"""Accuracy against a ground truth the core never computed.

The realistic generator writes, for every candidate, the decision the
contract requires, from how it built the case (``streams/scenarios.py``
shares no code with the rules). Offline replay must agree on every one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from streams.core.policy import DEFAULT_POLICY, RULE_IDS
from streams.offline.report import accuracy, collect, read_truth, verdicts
from streams.offline.scenarios import CASES, realistic, write_realistic


@pytest.mark.slow
def test_offline_replay_of_10000_realistic_customers_matches_the_ground_truth(
    tmp_path: Path,
) -> None:
    history, truth = tmp_path / "h.jsonl.gz", tmp_path / "h.truth.jsonl"
    records, candidates = write_realistic(history, truth, 10_000, seed=2026)
    assert candidates > 12_000 and records > 2 * candidates
    got, summary = collect(history, DEFAULT_POLICY, 8)
    assert not summary.bad_lines and not summary.unreadable and not summary.failed
    want = read_truth(truth)
    acc = accuracy(verdicts(got.decisions), want)
    # every rule the generator builds a case for is exercised, and exactly right
    assert {a.rule for a in acc} == set(RULE_IDS) - {"duplicate_content", "cap_exceeded"}
    for a in acc:
        assert (a.precision, a.recall) == (1.0, 1.0), (a.rule, a.misses[:5], a.false_positives[:5])
    assert verdicts(got.decisions) == want  # sends and actions too, copy by copy


def test_purchases_out_of_order_by_seconds_change_no_decision_and_nothing_is_late(
    tmp_path: Path,
) -> None:
    """The jitter really reorders the purchases topic, and the truth still holds."""
    from streams.contract.history import HistoryRecord, read_history

    history, truth = tmp_path / "j.jsonl", tmp_path / "j.truth.jsonl"
    # 3,000 customers in one day: purchases of different customers seconds apart
    write_realistic(history, truth, 3_000, seed=9, days=1, jitter_ms=3_000)
    times = [
        r.event_ms
        for r in read_history(history)
        if isinstance(r, HistoryRecord) and r.topic == "purchases"
    ]
    assert any(b < a for a, b in itertools.pairwise(times))  # out of order
    got, summary = collect(history, DEFAULT_POLICY, 8)
    assert verdicts(got.decisions) == read_truth(truth) and summary.late == 0


def test_the_generator_is_deterministic_streams_in_time_order_and_covers_every_case() -> None:
    first = list(realistic(300, seed=4))
    assert first == list(realistic(300, seed=4))
    times = [r["timestamp"] for r, _t in first if r is not None]
    assert times == sorted(times)
    cases = Counter(t.case for _r, t in first if t is not None)
    assert set(cases) == set(CASES)


def _peak_traced_bytes(customers: int, days: int, keep: bool = False) -> int:
    import tracemalloc

    kept = []
    tracemalloc.start()
    try:
        for item in realistic(customers, seed=3, days=days):
            if keep:
                kept.append(item)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_the_generator_holds_a_fraction_of_the_history_it_streams() -> None:
    """Millions of records must stream in bounded memory: the generator holds only the
    records of customers that overlap in time (about an eighth of a 30-day history of
    4,000 customers). Holding every case until the end (the bug this guards) peaks at
    the memory of keeping the whole history."""
    streamed = _peak_traced_bytes(4_000, 30)
    whole = _peak_traced_bytes(4_000, 30, keep=True)
    assert streamed < 0.3 * whole, (streamed, whole)


def test_a_four_times_longer_history_at_the_same_density_needs_about_the_same_memory() -> None:
    """Four times the customers over four times the days: what is held grows with the
    customers active at one time, not with the history's length (the bug: 3.9x)."""
    short = _peak_traced_bytes(1_000, 10)
    long = _peak_traced_bytes(4_000, 40)
    assert long < 2.0 * short, (short, long)
