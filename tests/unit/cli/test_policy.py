"""``policy rollback``: the rule lives in ``streams.ops.policy_topic``; the command keeps
its one-line refusals (exit 1) and reports what it restored. The topic is stood in for."""

from __future__ import annotations

from typing import Any

import pytest

import streams.ops.policy_topic as policy_topic
from streams.cli.main import main
from streams.core.policy import DEFAULT_POLICY, policy_from_mapping
from streams.core.policy_history import PolicyRecord, as_mapping

SPRING = policy_from_mapping({"version": "spring-2", "rules": {"frequency_cap": {"limit": 5}}})


def record(seq: int, policy: Any, effective_ms: int, **extra: Any) -> PolicyRecord:
    return PolicyRecord(
        seq=seq,
        version=policy.version,
        effective_at="2026-11-22T14:00:00Z",
        effective_ms=effective_ms,
        applied_by="alice",
        applied_at="2026-11-22T13:59:00Z",
        policy=as_mapping(policy),
        **extra,
    )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``publish`` was asked to write; it writes nothing."""
    calls: list[dict[str, Any]] = []

    def publish(settings: Any, policy: Any, effective_ms: int, **kw: Any) -> PolicyRecord:
        calls.append({"policy": policy, **kw})
        records = kw.get("records") or []
        return record(len(records) + 1, policy, effective_ms, rollback_of=kw.get("rollback_of"))

    monkeypatch.setattr(policy_topic, "publish", publish)
    return calls


@pytest.mark.parametrize(
    ("case", "records", "code", "err"),
    [
        ("nothing_applied", [], 1,
         "trigger-sanity: nothing to roll back: no version was applied live\n"),
        ("only_the_base_again", [record(1, DEFAULT_POLICY, 1_000)], 1,
         "trigger-sanity: default-1 is already what was in force before\n"),
        ("back_to_the_base", [record(1, SPRING, 1_000)], 0, ""),
        ("back_to_the_version_before",
         [record(1, SPRING, 1_000), record(2, DEFAULT_POLICY, 2_000)], 0, ""),
    ],
)  # fmt: skip
def test_rollback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    published: list[dict[str, Any]],
    case: str,
    records: list[PolicyRecord],
    code: int,
    err: str,
) -> None:
    monkeypatch.setattr(policy_topic, "read_records", lambda settings: records)
    assert main(["policy", "rollback", "--by", "bob"]) == code, case
    out, got_err = capsys.readouterr()
    assert got_err == err, case
    if code:
        assert not published and not out, case
        return
    latest, restored = records[-1].version, published[0]["policy"].version
    assert restored != latest and published[0]["rollback_of"] == latest, case
    assert out.startswith(f"rolled back {latest} -> {restored} (seq {len(records) + 1}): "), case


def test_a_rollback_that_wrote_other_contents_is_an_error_not_an_assert(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(policy_topic, "read_records", lambda settings: [record(1, SPRING, 1)])
    monkeypatch.setattr(
        policy_topic, "publish", lambda settings, policy, ms, **kw: record(2, SPRING, ms)
    )
    assert main(["policy", "rollback"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trigger-sanity: rollback of spring-2 published seq 2, but its ")
    assert "policy history" in err
