"""``generate --profile realistic --blast``: whole campaigns with a ground truth the
detection never computed, decided exactly by an offline replay with [blast] on; the
report shows the trips."""

from __future__ import annotations

from pathlib import Path

from streams.core.policy import DEFAULT_POLICY, load_policy
from streams.offline.report import accuracy, collect, read_truth, render, verdicts
from streams.offline.scenarios import write_realistic

ROOT = Path(__file__).resolve().parents[3]


def test_a_realistic_history_with_blasts_matches_its_truth_at_8_partitions(
    tmp_path: Path,
) -> None:
    history, truth = tmp_path / "h.jsonl", tmp_path / "h.truth.jsonl"
    write_realistic(history, truth, 2_000, seed=11, blast=True)
    policy = load_policy(ROOT / "policies" / "blast.toml")
    got, summary = collect(history, policy, 8)
    assert not summary.failed and not summary.unreadable
    want = read_truth(truth)
    acc = {a.rule: a for a in accuracy(verdicts(got.decisions), want)}
    held = acc["campaign_held_expired"]
    assert (held.precision, held.recall) == (1.0, 1.0), (held.misses[:5], held.false_positives[:5])
    assert verdicts(got.decisions) == want
    # the fallback and the loop trip; the personalised campaign and the promotion do not
    assert [(t.campaign, t.kind, t.count) for t in summary.trips] == [
        ("recs-blast", "share", 465),
        ("journey-loop", "volume", 301),
    ]
    page = render("h.jsonl", got, summary, policy, want)
    assert "<h2>Campaign trips</h2>" in page and "data-campaign='recs-blast'" in page
    assert "recs-blast: share of [SKU-X1,SKU-X2,SKU-X3] every 3m" in page
    assert '"trips":[[' in page  # marks on the time chart


def test_without_blast_on_the_same_campaigns_all_go_out(tmp_path: Path) -> None:
    history, truth = tmp_path / "h.jsonl", tmp_path / "h.truth.jsonl"
    write_realistic(history, truth, 200, seed=11, blast=True)
    got, summary = collect(history, DEFAULT_POLICY, 4)
    assert summary.trips == []
    assert not any(d.rule and d.rule.startswith("campaign_") for d in got.decisions)
