"""What the person on call runs against the topics: inspect by time and field."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson

from streams.partitioning import partition_for
from tests.integration.conftest import ROOT, Env


def _cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _suppressed(mid: str, cid: str, trigger: str, channel: str, rule: str) -> bytes:
    return orjson.dumps(
        {
            "message": {"message_id": mid, "customer_id": cid, "created_at": "2026-11-22T10:00:00Z",
                        "trigger": trigger, "channel": channel, "category": "marketing",
                        "context": {}, "payload": {}},
            "rule": rule,
            "reason": f"{rule} fired for {mid}",
            "evidence": [],
            "decided_at": "2026-11-22T10:00:01Z",
            "policy": "default-1",
        }
    )  # fmt: skip


def test_inspect_positions_by_time_and_filters_by_trigger_channel_and_customer(
    ts_env: Env,
) -> None:
    now = int(time.time() * 1000)
    topic = ts_env.settings.topics["suppressed"]
    p = ts_env.producer()
    old: list[str] = []
    new: list[str] = []
    for i in range(40):  # three hours ago, on every partition
        cid = f"c-{i}"
        value = _suppressed(f"old-{i}", cid, "promotion", "email", "frequency_cap")
        p.send(topic, key=cid.encode(), timestamp_ms=now - 3 * 3_600_000, value=value)
        old.append(f"old-{i}")
    for i, (trigger, channel) in enumerate(
        [("promotion", "email"), ("abandoned_cart", "sms"), ("promotion", "sms")]
    ):
        cid = f"c-{i}"
        value = _suppressed(f"new-{i}", cid, trigger, channel, "frequency_cap")
        p.send(topic, key=cid.encode(), timestamp_ms=now - 60_000, value=value)
        new.append(f"new-{i}")
    p.flush()
    p.close()

    def shown(*args: str) -> tuple[list[dict[str, Any]], str]:
        res = _cli(ts_env, "inspect", "suppressed", "--json", *args)
        assert res.returncode == 0, res.stderr
        return [orjson.loads(line) for line in res.stdout.splitlines()], res.stderr

    got, err = shown("--since", "1h")
    assert sorted(r["value"]["message"]["message_id"] for r in got) == new
    # positioned by the broker's time index: the 40 old records were never fetched
    assert "3 shown of 3 read from every partition (positioned by time" in err
    assert {r["role"] for r in got} == {"suppressed"} and all("offset" in r for r in got)

    got, err = shown("--until", "2h")
    assert sorted(r["value"]["message"]["message_id"] for r in got) == sorted(old)
    assert "40 shown of 40 read" in err  # stopped at the first record after --until

    got, _ = shown("--since", "1h", "--channel", "sms")
    assert sorted(r["value"]["message"]["message_id"] for r in got) == ["new-1", "new-2"]
    got, _ = shown("--since", "1h", "--trigger", "promotion", "--channel", "sms")
    assert [r["value"]["message"]["message_id"] for r in got] == ["new-2"]

    got, err = shown("--customer", "c-1")
    assert sorted(r["value"]["message"]["message_id"] for r in got) == ["new-1", "old-1"]
    part = partition_for("c-1", ts_env.settings.partitions)
    assert {r["partition"] for r in got} == {part}
    assert "from the customer's partition" in err

    got, _ = shown("--since", "1h", "--limit", "2")
    assert len(got) == 2

    res = _cli(ts_env, "inspect", "suppressed", "--since", "yesterday")
    assert res.returncode == 2 and "neither a duration" in res.stderr
