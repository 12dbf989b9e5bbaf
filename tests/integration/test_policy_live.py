"""A policy applied and rolled back while the worker runs, on the real broker.

Decisions before and after name the right version, and an offline replay of
the same input with the same policy history (``policy history --json``)
decides every message the same way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.contract.history import write_history
from streams.core.policy import DEFAULT_POLICY
from streams.core.policy_history import history_from_file
from streams.offline.replay import replay_offline
from tests.helpers import msg
from tests.integration.conftest import Env, WorkerProc
from tests.integration.live import cli, wait_logged


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _promo(mid: str, created_ms: int) -> dict[str, Any]:
    return msg(mid, "promotion", _iso(created_ms), payload={"offer": mid})


def _decisions(env: Env, n: int, worker: WorkerProc) -> dict[str, tuple[str, str]]:
    def enough(got: dict[str, list[Any]]) -> bool:
        return len(got["send_queue"]) + len(got["suppressed"]) >= n

    got = env.collect(("send_queue", "suppressed"), enough, worker=worker)
    out: dict[str, tuple[str, str]] = {}
    for rec in got["send_queue"]:
        v = orjson.loads(rec.value)
        out[v["message_id"]] = ("send", v["sanity"]["policy"])
    for rec in got["suppressed"]:
        v = orjson.loads(rec.value)
        out[v["message"]["message_id"]] = ("suppress", v["policy"])
    return out


def test_a_policy_applied_and_rolled_back_live_decides_from_its_effective_time(
    ts_env: Env, tmp_path: Path
) -> None:
    loose = tmp_path / "loose.toml"
    loose.write_text('version = "loose-2"\n\n[rules.frequency_cap]\nlimit = 10\n')
    worker = ts_env.worker()
    now = int(time.time() * 1000)
    # frequency_cap allows 3 promotions a day: the 4th is suppressed under the contract's policy
    first = [_promo(f"m{i}", now - (4 - i) * 60_000) for i in range(4)]
    ts_env.produce(first)
    assert _decisions(ts_env, 4, worker)["m3"] == ("suppress", "default-1")

    applied = cli(ts_env, "policy", "apply", str(loose), "--in", "5s", "--note", "campaign")
    assert applied.returncode == 0, applied.stderr
    assert "applied loose-2 as seq 1" in applied.stdout
    wait_logged(worker, "policy loose-2 (seq 1")
    t1 = orjson.loads(cli(ts_env, "policy", "history", "--json").stdout)["effective_ms"]
    # m4 just before the effective time: the old version; m5 from it on: the new one
    second = [_promo("m4", t1 - 2_000), _promo("m5", t1 + 1_000)]
    ts_env.produce(second)
    got = _decisions(ts_env, 6, worker)
    assert got["m4"] == ("suppress", "default-1")
    assert got["m5"] == ("send", "loose-2")

    back = cli(ts_env, "policy", "rollback", "--in", "5s", "--by", "oncall")
    assert back.returncode == 0, back.stderr
    assert "rolled back loose-2 -> default-1 (seq 2)" in back.stdout
    wait_logged(worker, "policy default-1 (seq 2")
    history = cli(ts_env, "policy", "history")
    assert "rollback of loose-2" in history.stdout and "oncall" in history.stdout
    lines = cli(ts_env, "policy", "history", "--json").stdout.splitlines()
    t2 = orjson.loads(lines[1])["effective_ms"]
    third = [_promo("m6", t2 + 1_000)]
    ts_env.produce(third)
    got = _decisions(ts_env, 7, worker)
    assert got["m6"] == ("suppress", "default-1")
    worker.stop()

    # the same input and the same policy history, offline: the same decisions
    versions = tmp_path / "policy.jsonl"
    versions.write_text("\n".join(lines) + "\n")
    history = tmp_path / "input.jsonl"
    write_history(history, first + second + third)
    out = tmp_path / "offline.jsonl"
    with open(out, "wb") as fh:
        replay_offline(
            history,
            DEFAULT_POLICY,
            fh,
            partitions=ts_env.settings.partitions,
            history=history_from_file(DEFAULT_POLICY, str(versions)),
        )
    offline = {d["message_id"]: d["action"] for d in map(orjson.loads, out.read_bytes().split())}
    assert offline == {mid: action for mid, (action, _v) in got.items()}


def test_a_policy_that_would_change_state_is_refused_by_apply(ts_env: Env, tmp_path: Path) -> None:
    slow = tmp_path / "slow.toml"
    slow.write_text('version = "slow-2"\n\n[settle]\npromotion = "1h"\n')
    res = cli(ts_env, "policy", "apply", str(slow))
    assert res.returncode == 2
    assert "settle" in res.stderr and "restart" in res.stderr
    res = cli(ts_env, "policy", "apply", str(slow), "--at", "2020-01-01T00:00:00Z")
    assert res.returncode == 2 and "in the past" in res.stderr
    assert cli(ts_env, "policy", "history", "--json").stdout == ""
