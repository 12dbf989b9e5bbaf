"""The kill switch on the real broker: commands go to the compacted campaigns topic
with who, when and why, and an offline replay given that history (``campaign history
--json``) holds, releases and kills what the commands say."""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.contract.history import write_history
from streams.core.campaign_history import orders_from_file
from streams.core.clock import to_ms
from streams.offline.replay import replay_offline
from tests.integration.conftest import Env
from tests.integration.live import cli
from tests.unit.core.test_campaigns import T0, blast_history, blast_policy


def test_campaign_commands_are_kept_with_who_when_why_and_replay_offline(
    ts_env: Env, tmp_path: Path
) -> None:
    res = cli(ts_env, "campaign", "kill", "recs")
    assert res.returncode == 2 and "--reason" in res.stderr
    assert cli(ts_env, "campaign", "list").stdout.strip() == "no campaign command given yet"
    start = to_ms(T0)
    # effective times in the past are refused (workers decided those messages already),
    # so the history under test is given for times ahead of now, then replayed offline
    # over a history rebased onto them
    got = cli(ts_env, "campaign", "release", "recs", "--in", "1h", "--reason",
              "the bundle is intended", "--by", "ana")  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "release recs: seq 1" in got.stdout
    got = cli(ts_env, "campaign", "kill", "recs", "--in", "2h", "--reason", "broken after all")
    assert got.returncode == 0, got.stderr
    shown = cli(ts_env, "campaign", "show", "recs").stdout
    assert "release" in shown and "by ana" in shown and "the bundle is intended" in shown
    assert "broken after all" in shown
    listed = cli(ts_env, "campaign", "list").stdout
    assert "recs" in listed and "running" in listed  # neither is in force yet
    lines = cli(ts_env, "campaign", "history", "--json").stdout.splitlines()
    records = [orjson.loads(x) for x in lines]
    assert [(r["seq"], r["command"], r["by"]) for r in records][:1] == [(1, "release", "ana")]
    assert [r["command"] for r in records] == ["release", "kill"]

    # the same commands, moved onto the test history's clock: release at 200 s, kill at 350 s
    for r, offset in zip(records, (200_000, 350_000), strict=True):
        r["effective_ms"] = start + offset
    hist = tmp_path / "campaigns.jsonl"
    hist.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    history = tmp_path / "blast.jsonl"
    write_history(history, blast_history())
    out = tmp_path / "d.jsonl"
    with open(out, "wb") as fh:
        summary = replay_offline(history, blast_policy(), fh, partitions=4,
                                 orders=orders_from_file(str(hist)))  # fmt: skip
    decided = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert len(summary.trips) == 2
    rules = {d["rule"] for d in decided}
    assert "campaign_killed" in rules and "campaign_held_expired" not in rules


def test_the_worker_refuses_a_policy_with_blast_on_in_one_line(ts_env: Env, tmp_path: Path) -> None:
    policy = tmp_path / "blast.toml"
    policy.write_text('version = "blast-1"\n\n[blast]\nenabled = true\n')
    env = dict(ts_env.env, TRIGGER_SANITY_POLICY_FILE=str(policy))
    res = cli(env, "worker", timeout=90)
    assert res.returncode == 2
    assert "[blast]" in res.stderr and "offline" in res.stderr
    assert "Traceback" not in res.stderr
