"""Capture an incident from the input topics and replay it: the same decisions.

Produced with the contract's partitioner and a malformed record; the capture
of the topics, replayed offline, decides every message as the replay of the
original file and as the worker did. (Topics filled by a crc32 producer are
not covered: see the capture module's docstring.)
"""

from __future__ import annotations

from pathlib import Path

import orjson

from streams.contract.history import write_history
from streams.contract.topics import INPUT_ROLES
from streams.offline.generator import generate
from streams.ops.produce import produce_history
from tests.integration.conftest import Env
from tests.integration.live import assert_same, cli, decided, live_decisions, offline_decisions


def test_a_capture_of_the_topics_replays_to_the_decisions_the_worker_made(
    ts_env: Env, tmp_path: Path
) -> None:
    records = generate(120, seed=31)
    history = tmp_path / "original.jsonl"
    write_history(history, records)
    parts = ts_env.settings.partitions
    original = offline_decisions(history, parts)

    producer = ts_env.producer()  # murmur2, the contract's partitioner
    names = {r: ts_env.settings.topics[r] for r in INPUT_ROLES}
    produced, bad = produce_history(history, producer, names)
    producer.send(ts_env.settings.topics["purchases"], value=b'{"event_id": "p-x"', key=b"c")
    producer.flush()
    producer.close()
    assert produced == len(records) and not bad

    worker = ts_env.worker()
    got = ts_env.collect(
        ("send_queue", "suppressed"), lambda g: decided(g) >= len(original), worker=worker
    )
    worker.stop()
    live = live_decisions(got)

    out = tmp_path / "incident.jsonl"
    res = cli(ts_env, "capture", "--from", "2020-01-01T00:00:00Z", "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"wrote {len(records):,} records" in res.stdout
    assert "left out 1 record(s) whose value is not JSON" in res.stdout
    captured = offline_decisions(out, parts)

    assert_same(original, captured)
    assert_same(captured, live)

    # a window of the topics: only records of that time range, positioned by time
    stamps = sorted(orjson.loads(line)["timestamp"] for line in out.read_bytes().splitlines())
    cut = stamps[len(stamps) // 2]
    first_half = tmp_path / "first-half.jsonl"
    res = cli(
        ts_env, "capture", "--from", stamps[0], "--to", cut, "--out", str(first_half), timeout=300
    )
    assert res.returncode == 0, res.stderr
    times = [orjson.loads(line)["timestamp"] for line in first_half.read_bytes().splitlines()]
    # each partition is cut where its records first pass --to (the broker's time index):
    # a straggler written after that point, with an earlier time, stays out
    want = [t for t in stamps if t <= cut]
    assert all(t <= cut for t in times) and 0.95 * len(want) <= len(times) <= len(want)
