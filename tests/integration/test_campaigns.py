"""The kill switch on the real broker: commands go to the compacted campaigns topic
with who, when and why, and an offline replay given that history (``campaign history
--json``) holds, releases and kills what the commands say."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson

from streams.contract.history import write_history
from streams.core.campaign_history import orders_from_file
from streams.core.campaigns import Order, Trip
from streams.core.clock import iso, to_ms
from streams.core.policy import load_policy
from streams.offline.replay import replay_offline
from streams.offline.report import accuracy, read_truth, verdicts
from streams.offline.scenarios import write_realistic
from streams.ops.campaign_topic import publish
from tests.browser import load_page
from tests.integration.conftest import FEED_RATE, Env, Feed, feed_history
from tests.integration.live import (
    assert_same,
    cli,
    decided,
    fresh_topics,
    get,
    live_decisions,
    produce_crc32,
    seen_of,
    stats,
    wait_logged,
    worker_decides_as_offline,
)
from tests.unit.core.test_campaigns import T0, blast_history, blast_policy

BLAST = Path(__file__).resolve().parents[2] / "policies" / "blast.toml"


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


def _blast_backlog(
    ts_env: Env,
    tmp_path: Path,
    suffix: str,
    orders: list[Order] | None = None,
    rate: float | None = None,
    **overrides: str,
) -> tuple[list[dict[str, Any]], list[Trip], Path, Feed]:
    """Fresh 8-partition topics with 2,000 realistic customers and their campaigns (a
    fallback to identical content, a loop, a personalised campaign, a promotion, a
    launch) produced up front; the offline decisions under ``policies/blast.toml``
    (given ``orders``: with those ops commands, also published to the campaigns topic).
    With ``rate``, the input is produced at that many records/s in the background."""
    fresh_topics(ts_env, suffix, 8, idle_after="0" if rate is None else "2", **overrides)
    history, truth = tmp_path / "blast.jsonl", tmp_path / "blast.truth.jsonl"
    write_realistic(history, truth, 2_000, seed=11, blast=True)
    out = tmp_path / "blast.offline.jsonl"
    with open(out, "wb") as fh:
        summary = replay_offline(history, load_policy(BLAST), fh, orders=orders or ())
    for o in orders or ():
        publish(ts_env.settings, o.campaign, o.command, o.effective_ms, o.reason, o.by)
    feed = feed_history(ts_env.settings, history, rate)
    return [orjson.loads(x) for x in out.read_bytes().splitlines()], summary.trips, truth, feed


def test_campaign_trips_through_kafka_equal_the_offline_replay_and_are_alerted(
    ts_env: Env, tmp_path: Path, free_port: int
) -> None:
    """Each of the 8 partitions keeps a replica of the campaign gate, fed through the
    re-route topic: the worker trips the same campaigns at the same candidates as the
    offline replay, holds the same messages and lets them expire the same. Ops see the
    trips in the log, on /metrics, on /stats and on the dashboard (headless Chromium)."""
    offline, trips, truth, _ = _blast_backlog(ts_env, tmp_path, "b")
    assert [(t.campaign, t.kind) for t in trips] == [("recs-blast", "share"),
                                                     ("journey-loop", "volume")]  # fmt: skip
    ts_env.env.update({"TRIGGER_SANITY_WEB_ENABLED": "true",
                       "TRIGGER_SANITY_WEB_PORT": str(free_port)})  # fmt: skip
    worker = ts_env.worker(policy=BLAST)
    try:
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= len(offline),
                       timeout=600, worker=worker)  # fmt: skip
        wait_logged(worker, "campaign journey-loop tripped", timeout=30)
        log = worker.log.read_text(errors="replace")
        assert re.search(
            r"campaign recs-blast tripped \(share\) at .*: \d+ of \d+ candidates "
            r"in the window carry the same content \[SKU-X1,SKU-X2,SKU-X3\]",
            log,
        )
        assert "campaign release recs-blast --reason intended" in log
        res = get(free_port, "/metrics")
        assert res is not None
        assert (
            b'trigger_sanity_campaign_tripped{campaign="recs-blast",state="tripped"} 1.0' in res[1]
        )
        page = stats(free_port)
        tripped = {c["campaign"]: c for c in page["campaigns"]}
        assert tripped["recs-blast"]["fingerprint"] == "SKU-X1,SKU-X2,SKU-X3"
        # every replica counted what the offline book counted
        for t in trips:
            assert (tripped[t.campaign]["held"], tripped[t.campaign]["count"]) == (t.held, t.count)
        shown = load_page(
            f"http://127.0.0.1:{free_port}/dashboard/",
            {
                "tile": "document.getElementById('campaigns-tripped').textContent",
                "listed": "Array.from(document.querySelectorAll('#campaigns .warn'))"
                ".map(w => [w.dataset.campaign, w.textContent])",
            },
            ready="window.__loaded === true",
        ).values
    finally:
        worker.stop()
    assert shown["tile"] == "2"
    listed = dict(shown["listed"])
    assert "recs-blast" in listed and "journey-loop" in listed
    assert "campaign release recs-blast" in listed["recs-blast"]
    assert "SKU-X1,SKU-X2,SKU-X3" in listed["recs-blast"]
    live = live_decisions(ts_env.collect(("send_queue", "suppressed"), lambda g: True))
    assert_same(offline, live)
    held = [d for d in live if d["rule"] == "campaign_held_expired"]
    assert len(held) > 300
    want = read_truth(truth)
    got = verdicts(seen_of(live))
    acc = {a.rule: a for a in accuracy(got, want)}
    assert (acc["campaign_held_expired"].precision, acc["campaign_held_expired"].recall) == (
        1.0,
        1.0,
    )


def test_kill_and_release_through_kafka_across_a_kill_9_equal_the_offline_replay(
    ts_env: Env, tmp_path: Path
) -> None:
    """Ops release the fallback campaign a minute after its trip (it trips again: the
    content is still identical) and kill the loop; the worker is killed with SIGKILL
    partway and restarted. Its decisions equal an offline replay given the same
    commands: none missing, different or twice. The input arrives at a live rate, so
    the kill lands while campaigns are being counted."""
    _, first, _, _ = _blast_backlog(ts_env, tmp_path, "k0")
    at = {t.campaign: t.at_ms for t in first}
    orders = [
        Order("recs-blast", "release", at["recs-blast"] + 60_000, 1, "ana", "intended bundle"),
        Order("journey-loop", "kill", at["journey-loop"] + 1, 2, "ana", "loop bug"),
    ]
    # a third of the live rate: the first decisions wait for the empty identities stream
    # to count as idle (idle_after, 2 s), and the kill must land while input still comes
    offline, _, _, feed = _blast_backlog(ts_env, tmp_path, "k1", orders, FEED_RATE / 3)
    rules = {d["rule"] for d in offline}
    assert {"campaign_killed", "campaign_held_expired"} <= rules
    worker = ts_env.worker(policy=BLAST)
    try:
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= len(offline) // 3,
                       timeout=600, worker=worker)  # fmt: skip
    finally:
        worker.kill()
    feed.wait()
    _, log = _decide_live(ts_env, offline)
    rows = re.search(r"(\d+) campaign rows", log)
    assert rows is not None and int(rows.group(1)) > 0, "the restart read no replica back"


def _decide_live(ts_env: Env, offline: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    return worker_decides_as_offline(ts_env, BLAST, offline)


def test_a_live_trip_holds_explain_names_it_and_a_release_now_sends_what_it_held(
    ts_env: Env, free_port: int
) -> None:
    """Live: recommendations of the last minutes fall back to the same three products;
    the campaign trips and holds the rest (their hold runs hours past now). ``explain``
    of a held message names the trip, asking the worker; ``campaign release`` with its
    default effective time (now) sends them, decided again with every rule."""
    fresh_topics(ts_env, "lv", 4, idle_after="1", web_enabled="true", web_port=str(free_port))
    now = int(time.time() * 1000)
    # All in one window of the policy (epoch-aligned): split by a window boundary, the
    # second part would trip on volume against the first before the share check (the
    # run at 03:39:56 UTC put 7 of them before 03:30)
    window, span = load_policy(BLAST).blast.window, 600 * 599
    start = now - now % window
    if now - start <= span:
        start -= span + 1000  # the end of the previous window, minutes ago
    records = []
    for r in blast_history(n=600, blast_after=150):
        v = r["value"]
        i = int(v["message_id"][1:])
        v["created_at"] = iso(start + 600 * i)  # six minutes, within the last fifteen
        records.append(r)
    ts_env.produce(records)
    worker = ts_env.worker(policy=BLAST)
    try:
        wait_logged(worker, "campaign recs tripped (share)", timeout=120)
        held: list[dict[str, Any]] = []

        def some_held(g: dict[str, list[Any]]) -> bool:
            held[:] = [h for h in stats(free_port)["campaigns"] if h["campaign"] == "recs"]
            return decided(g) > 0 and bool(held) and held[0]["held_here"] > 100

        got = ts_env.collect(("send_queue", "suppressed"), some_held, timeout=120, worker=worker)
        decided_ids = {d["message_id"] for d in live_decisions(got)}
        waiting = sorted({f"m{i:05d}" for i in range(600)} - decided_ids)
        assert len(waiting) == held[0]["held_here"]
        shown = cli(ts_env, "explain", waiting[-1], "--url", f"http://127.0.0.1:{free_port}")
        assert shown.returncode == 0, shown.stderr
        assert f"{waiting[-1]}: HELD by campaign recs (tripped)" in shown.stdout
        assert "carry the same content [SKU-A,SKU-B,SKU-C]" in shown.stdout
        assert "campaign_held_expired" in shown.stdout
        res = cli(ts_env, "campaign", "release", "recs", "--reason", "the bundle is intended")
        assert res.returncode == 0, res.stderr
        got = ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= 600,
                             timeout=120, worker=worker)  # fmt: skip
    finally:
        worker.stop()
    live = {d["message_id"]: d for d in live_decisions(got)}
    assert len(live) == 600
    released = [live[m] for m in waiting]
    # decided again as of the release: sent (the trip cleared; the same content may trip
    # the count again only after another min_messages)
    assert all(d["action"] == "send" for d in released), [d["rule"] for d in released][:5]


def test_at_least_once_campaign_counts_go_after_the_write_back_and_decide_as_offline(
    ts_env: Env, tmp_path: Path
) -> None:
    """Without transactions the counts of a commit cycle are sent once the write-back
    recording them is durable: the same trips and decisions as the offline replay."""
    offline, _trips, _truth, _ = _blast_backlog(ts_env, tmp_path, "alo", guarantee="at_least_once")
    _decide_live(ts_env, offline)


def test_a_blast_produced_with_the_crc32_partitioner_decides_as_offline(
    ts_env: Env, tmp_path: Path
) -> None:
    """kcat's default partitioner puts most records on the wrong partition: the worker
    forwards them, and the campaign entries of forwarded candidates still sort as the
    offline replay's (their arrival frontier travels with them)."""
    fresh_topics(ts_env, "crc", 8, idle_after="0")
    history, truth = tmp_path / "blast.jsonl", tmp_path / "blast.truth.jsonl"
    write_realistic(history, truth, 2_000, seed=11, blast=True)
    out = tmp_path / "blast.offline.jsonl"
    with open(out, "wb") as fh:
        summary = replay_offline(history, load_policy(BLAST), fh)
    assert len(summary.trips) == 2
    offline = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    produce_crc32(ts_env.settings, history)
    live, log = _decide_live(ts_env, offline)
    assert "re-routing them costs a round trip" in log  # records were forwarded
    assert sum(1 for d in live if d["rule"] == "campaign_held_expired") > 300
