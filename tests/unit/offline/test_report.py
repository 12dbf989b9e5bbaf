"""The replay report's numbers: accuracy against a truth, policy diffs, the page."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.contract.history import write_history
from streams.core.policy import DEFAULT_POLICY, policy_from_mapping
from streams.offline.generator import generate
from streams.offline.report import (
    accuracy,
    collect,
    compare,
    diff_summary,
    read_truth,
    render,
    verdicts,
)


def V(**kw: list[tuple[str, str | None]]) -> dict[str, Counter[tuple[str, str | None]]]:
    return {mid: Counter(v) for mid, v in kw.items()}


@pytest.mark.parametrize(
    ("scenario", "decided", "truth", "rule", "expected"),
    [
        ("all_right", V(m1=[("suppress", "r")], m2=[("send", None)]),
         V(m1=[("suppress", "r")], m2=[("send", None)]), "r", (1, 0, 0)),
        ("a_false_positive", V(m1=[("suppress", "r")], m2=[("suppress", "r")]),
         V(m1=[("suppress", "r")], m2=[("send", None)]), "r", (1, 1, 0)),
        ("a_miss", V(m1=[("send", None)]), V(m1=[("suppress", "r")]), "r", (0, 0, 1)),
        ("never_decided_is_a_miss", V(), V(m1=[("suppress", "r")]), "r", (0, 0, 1)),
        ("a_retried_id_is_counted_per_copy",
         V(m1=[("send", None), ("suppress", "dup")]),
         V(m1=[("send", None), ("suppress", "dup")]), "dup", (1, 0, 0)),
        ("a_retry_decided_once_too_often",
         V(m1=[("suppress", "dup"), ("suppress", "dup")]),
         V(m1=[("send", None), ("suppress", "dup")]), "dup", (1, 1, 0)),
    ],
)  # fmt: skip
def test_precision_and_recall_per_rule(
    scenario: str,
    decided: dict[str, Counter[tuple[str, str | None]]],
    truth: dict[str, Counter[tuple[str, str | None]]],
    rule: str,
    expected: tuple[int, int, int],
) -> None:
    acc = {a.rule: a for a in accuracy(decided, truth)}[rule]
    assert (acc.tp, acc.fp, acc.fn) == expected, scenario


def test_the_report_and_a_policy_diff_on_a_generated_history(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, generate(150, seed=5))
    got, summary = collect(path, DEFAULT_POLICY, 8)
    assert len(got.decisions) == summary.candidates
    # a truth that disagrees on two messages: the rules concerned lose precision/recall
    lines = [
        {"message_id": d.message_id, "action": d.action, "rule": d.rule} for d in got.decisions
    ]
    flipped = [x for x in lines if x["rule"] == "frequency_cap"][:2]
    assert len(flipped) == 2
    for x in flipped:
        x["action"], x["rule"] = "send", None
    truth_path = tmp_path / "truth.jsonl"
    truth_path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    acc = {a.rule: a for a in accuracy(verdicts(got.decisions), read_truth(truth_path))}
    assert acc["frequency_cap"].fp == 2 and acc["frequency_cap"].recall == 1.0
    assert set(acc["frequency_cap"].false_positives) == {x["message_id"] for x in flipped}
    assert all(a.precision == 1.0 for r, a in acc.items() if r != "frequency_cap")

    page = render("h.jsonl", got, summary, DEFAULT_POLICY, read_truth(truth_path))
    assert f"id=decisions>{summary.candidates}<" in page and "<script>" in page
    assert "data-rule='frequency_cap'" in page and "id=accuracy" in page

    loose = policy_from_mapping({"version": "loose-2", "rules": {"frequency_cap": {"limit": 50}}})
    got_b, _ = collect(path, loose, 8)
    changes = compare(got, got_b)
    assert changes and all(c.before == ("suppress", "frequency_cap") for c in changes)
    assert diff_summary(changes, "default-1", "loose-2").startswith(
        f"{len(changes)} message(s) decided differently under loose-2"
    )


@pytest.mark.parametrize(
    ("case", "extra", "page"),
    [
        ("report", ["--report", "R.html"], "R.html"),
        ("report_with_late_out", ["--report", "R.html", "--late-out", "L.jsonl"], "R.html"),
        ("against_with_report", ["--against", "loose.toml", "--report", "D.html"], "D.html"),
        ("against_alone", ["--against", "loose.toml"], None),
    ],
)
def test_replay_out_is_written_beside_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, extra: list[str], page: str | None
) -> None:
    """--report and --against once dropped --out/--late-out without a word."""
    from streams.cli.main import main

    monkeypatch.chdir(tmp_path)
    write_history("h.jsonl", generate(60, seed=3))
    Path("loose.toml").write_text('version = "loose-2"\n[rules.frequency_cap]\nlimit = 50\n')
    assert main(["replay", "h.jsonl", "--offline", "--out", "plain.jsonl",
                 "--late-out", "plain-late.jsonl"]) == 0  # fmt: skip
    _got, summary = collect("h.jsonl", DEFAULT_POLICY, 8)

    assert main(["replay", "h.jsonl", "--offline", "--out", "F.jsonl", *extra]) == 0, case
    decisions = Path("F.jsonl").read_bytes()
    assert len(decisions.splitlines()) == summary.candidates, case
    assert decisions == Path("plain.jsonl").read_bytes(), case
    if "--late-out" in extra:
        assert Path("L.jsonl").read_bytes() == Path("plain-late.jsonl").read_bytes(), case
    if page is not None:
        assert Path(page).read_text().startswith("<!doctype html"), case
