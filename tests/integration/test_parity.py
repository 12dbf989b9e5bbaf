"""Parity: the Kafka worker and the offline replay decide a history identically.

1,000 generated customers (every trigger type, every rule) are produced into
the topics all at once, so the worker reads them in whatever interleaving
its consumer chooses across 8 partitions; every decision must equal the
offline replay's, record for record.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson

from streams.contract.history import write_history
from streams.core.policy import DEFAULT_POLICY, RULE_IDS, Policy, load_policy
from streams.core.vocabulary import CONFIGURED
from streams.offline.generator import generate
from streams.offline.replay import replay_offline
from streams.offline.report import accuracy, read_truth, verdicts
from streams.offline.scenarios import write_realistic
from tests.integration.conftest import FEED_RATE, Env, Feed, feed_history
from tests.integration.live import (
    assert_same,
    decided,
    fresh_topics,
    live_decisions,
    seen_of,
    worker_decides_as_offline,
)

CUSTOMERS = 1000
ROOT = Path(__file__).resolve().parents[2]


def _prepare(
    ts_env: Env,
    tmp_path: Path,
    customers: int,
    seed: int,
    rate: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> tuple[list[dict[str, Any]], Feed]:
    """Fresh 8-partition topics, a generated history produced (all at once, or at ``rate``
    records/s in the background), its offline decisions."""
    # Input fed while the worker runs: a partition is idle only after 2 s caught up (see
    # test_delivery._fresh); a backlog produced up front is never caught up before its end.
    idle_after = "0" if rate is None else "2"
    fresh_topics(ts_env, f"x{seed}", 8, idle_after=idle_after)
    settings = ts_env.settings

    history = tmp_path / f"history-{seed}.jsonl.gz"
    write_history(history, generate(customers, seed=seed))
    offline_out = tmp_path / f"offline-{seed}.jsonl"
    with open(offline_out, "wb") as fh:
        summary = replay_offline(history, policy, fh)
    offline = [orjson.loads(x) for x in offline_out.read_bytes().splitlines()]
    assert summary.candidates == len(offline) > 5 * customers
    if policy is DEFAULT_POLICY:
        # every rule but those a policy must configure first ([[caps]]: the quiet-hours
        # and caps parity test below runs them)
        want = set(RULE_IDS) - CONFIGURED
        assert want <= set(summary.rules), "the history must exercise every rule"

    return offline, feed_history(settings, history, rate)


def test_worker_equals_offline_replay(ts_env: Env, tmp_path: Path) -> None:
    offline, feed = _prepare(ts_env, tmp_path, CUSTOMERS, seed=2026)
    produced = feed.wait()
    started = time.monotonic()
    worker = ts_env.worker()
    try:
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= len(offline),
                       timeout=600, worker=worker)  # fmt: skip
        took = time.monotonic() - started
    finally:
        worker.stop()
    # Re-read everything after a clean stop: a duplicate or late extra decision would show here.
    live = live_decisions(ts_env.collect(("send_queue", "suppressed"), lambda g: True))
    print(f"\nparity: {produced} records, {len(live)} decisions by the worker in {took:.1f}s "
          f"({produced / took:,.0f} records/s end to end incl. startup)")  # fmt: skip
    assert_same(offline, live)


def test_quiet_hours_worker_equals_offline_replay(ts_env: Env, tmp_path: Path) -> None:
    """The example policy holds SMS and push for quiet hours in six time zones (from
    sessions, from context, or the default): the same holds, the same release times
    (``send_at``), the same expiries, offline and through Kafka."""
    example = ROOT / "policies" / "example.toml"
    offline, feed = _prepare(ts_env, tmp_path, CUSTOMERS, seed=77, policy=load_policy(example))
    held = [d for d in offline if d.get("held_for") == "quiet_hours"]
    assert len(held) > 100 and any(d["rule"] == "quiet_hours_expired" for d in held)
    feed.wait()
    worker_decides_as_offline(ts_env, example, offline)


def test_a_realistic_history_with_holds_equals_offline_and_its_truth(
    ts_env: Env, tmp_path: Path
) -> None:
    """2,400 realistic customers, 400 of them across six time zones with night-time SMS
    and push, cart mails held for the night and a cap across sms and push
    (``policies/holds.toml``): the worker decides what the offline replay decides, and
    both what the ground truth says, for the new rules too."""
    holds = ROOT / "policies" / "holds.toml"
    policy = load_policy(holds)
    fresh_topics(ts_env, "h", 8, idle_after="0")
    history, truth = tmp_path / "holds.jsonl", tmp_path / "holds.truth.jsonl"
    write_realistic(history, truth, 2_000, seed=21, holds=True)
    offline_out = tmp_path / "holds.offline.jsonl"
    with open(offline_out, "wb") as fh:
        replay_offline(history, policy, fh)
    offline = [orjson.loads(x) for x in offline_out.read_bytes().splitlines()]
    feed_history(ts_env.settings, history, None).wait()
    live, _ = worker_decides_as_offline(ts_env, holds, offline)
    want = read_truth(truth)
    acc = {a.rule: a for a in accuracy(verdicts(seen_of(live)), want)}
    for rule in ("quiet_hours_expired", "cap_exceeded"):
        assert (acc[rule].precision, acc[rule].recall) == (1.0, 1.0), rule


def test_rebalance_to_a_second_worker_keeps_parity(ts_env: Env, tmp_path: Path) -> None:
    """Partitions (with their held candidates) move to a second worker mid-stream."""
    # arriving over ~11 s while the workers run: the second joins mid-stream
    offline, feed = _prepare(ts_env, tmp_path, 2000, seed=77, rate=FEED_RATE)
    first = ts_env.worker()
    second = None
    try:
        # A tenth of the candidates read and committed: most of the backlog is still ahead.
        ts_env.wait_committed("outbound", len(offline) // 10, first)
        second = ts_env.worker()
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= len(offline),
                       timeout=600, worker=second)  # fmt: skip
        assert first.proc.poll() is None, first.tail()
        feed.wait()
    finally:
        if second is not None:
            second.stop()
        first.stop()
    # the second worker really took partitions (and their held candidates) over mid-stream
    assert re.search(r"state recovered: partitions \[\d", second.log.read_text()), second.tail()
    assert_same(
        offline, live_decisions(ts_env.collect(("send_queue", "suppressed"), lambda g: True))
    )
