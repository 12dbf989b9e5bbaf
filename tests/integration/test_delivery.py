"""Delivery under failure, against a real broker: kill -9, SIGTERM, a broker restart, a
second worker taking over. Each run: 1,500 generated customers (~10,000 candidates) in 8
partitions, the fault injected mid-stream, then every candidate counted by message_id
(``streams.verify``, reading committed records only) against the offline replay of
the same file: missing 0, different 0, duplicated 0 (the default guarantee,
exactly-once; ``test_exactly_once.py`` has the at-least-once mode's duplicates).

The crash tests feed their input at a live rate (``FEED_RATE``) while the workers run:
a worker decides a backlog this size in a few seconds, so with the whole history in
the topics up front it had read nearly all of it before the first kill landed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from streams.contract.history import write_history
from streams.offline.generator import generate
from streams.ops.verify import Conservation, conserve, decision_key, read_topics
from streams.worker.snapshot import LocalSnapshot
from tests.integration.conftest import (
    FEED_RATE,
    LOCAL_KAFKA,
    ROOT,
    Env,
    Feed,
    WorkerProc,
    feed_history,
)
from tests.integration.live import fresh_topics, offline_keys, produce_crc32

CUSTOMERS = 1500
PARTITIONS = 8
# the tests' own deadlines (below) fire first, with the worker's log in the failure
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, int]:
    path = tmp_path_factory.mktemp("delivery") / "history.jsonl"
    records = generate(CUSTOMERS, seed=404)
    write_history(path, records)
    candidates = sum(1 for r in records if r["topic"] == "outbound")
    return path, offline_keys(path, PARTITIONS), candidates


def _fresh(ts_env: Env, suffix: str) -> None:
    # The input arrives while the workers run (FEED_RATE): a partition counts as idle
    # only after 2 s caught up, as a deployment with continuous producers is set up
    # (the time semantics in the README); with 0, a partition caught up between two
    # of the feed's bursts would let stream time pass evidence still on its way.
    fresh_topics(ts_env, suffix, PARTITIONS, idle_after="2")


def _produce(ts_env: Env, path: Path, rate: float | None = FEED_RATE) -> Feed:
    return feed_history(ts_env.settings, path, rate)


def _undecided(ts_env: Env, owed: Counter[str]) -> int:
    """Candidates still without a decision: per message_id, copies owed (a history
    repeats some ids on purpose) minus decisions out. A duplicate decision of one copy
    must not stand in for another copy still to come."""
    got = read_topics(ts_env.settings, ("send_queue", "suppressed"))
    out = Counter(decision_key(role, v)[0] for role, vs in got.items() for v in vs if v)
    return sum(max(0, n - out[mid]) for mid, n in owed.items())


def _finish(ts_env: Env, worker: WorkerProc, offline: list, timeout: float = 300) -> None:
    """Wait until every candidate has a decision and the worker has recovered (it has
    loaded its state, so the tests can read what it loaded), then stop it cleanly."""
    owed = Counter(d[0] for d in offline)
    deadline = time.monotonic() + timeout
    try:
        while b"state recovered" not in worker.log.read_bytes() or _undecided(ts_env, owed):
            assert time.monotonic() < deadline, worker.tail()
            assert worker.proc.poll() is None, worker.tail()
            time.sleep(1)  # polling the output topics, bounded by the deadline
    finally:
        worker.stop()


def _own_broker(ts_env: Env, verb: str) -> tuple[str, Path]:
    """Port and pid file of the broker tools/kafka started here; skips when the broker came
    from elsewhere (KAFKA_BOOTSTRAP_SERVERS, testcontainers): it cannot be killed here."""
    port = ts_env.settings.bootstrap_servers.rsplit(":", 1)[-1]
    pid_file = ROOT / ".cache" / "kafka" / f"broker-{port}.pid"
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or not pid_file.exists():
        pytest.skip(f"the broker was not started by tools/kafka here, so it cannot be {verb}")
    return port, pid_file


def _check(
    ts_env: Env, offline: list, label: str, feed: Feed, duplicates_allowed: bool = False
) -> Conservation:
    produced = feed.wait()
    got = read_topics(ts_env.settings, ("outbound", "send_queue", "suppressed", "dead_letter"))
    result = conserve(
        got["outbound"],
        got["send_queue"],
        got["suppressed"],  # type: ignore[arg-type]
        got["dead_letter"],
        ts_env.settings.topics["outbound"],
        offline,
    )  # type: ignore[arg-type]
    print(
        f"\n{label}: {produced} records in, {result.candidates} candidates, "
        f"{result.decisions} decisions out, missing {result.missing}, different "
        f"{result.different}, duplicated {result.duplicated_identical} identical / "
        f"{result.duplicated_different} different, unexpected {result.unexpected}"
    )
    assert result.missing == 0 and result.different == 0, result.render()
    assert result.duplicated_different == 0 and result.unexpected == 0, result.render()
    if not duplicates_allowed:  # exactly-once: not even byte-identical copies
        assert result.duplicated_identical == 0, result.render()
    return result


def test_three_kill_9_mid_stream(ts_env: Env, history: tuple[Path, list, int]) -> None:
    path, offline, candidates = history
    _fresh(ts_env, "k9")
    produced = _produce(ts_env, path)
    for share in (0.2, 0.45, 0.7):
        worker = ts_env.worker()
        ts_env.wait_committed("outbound", int(candidates * share), worker)
        worker.kill()
    _finish(ts_env, ts_env.worker(), offline)
    _check(ts_env, offline, "3x kill -9", produced)


_LOADED = re.compile(r"loaded (\d+) changelog records and (\d+) from the local copy")
_CUSTOMERS = re.compile(
    r"loaded \d+ changelog records and \d+ from the local copy.*\((\d+) customers in memory\)"
)


def test_three_kill_9_with_the_rocksdb_local_copy_read_only_the_changelog_tail(
    ts_env: Env, history: tuple[Path, list, int]
) -> None:
    """The rocksdb:// store: each restart after a kill -9 loads its partitions from the
    local copy and reads only the changelog after it; outcomes are still exact."""
    path, offline, candidates = history
    _fresh(ts_env, "rk")
    ts_env.env["TRIGGER_SANITY_STORE"] = "rocksdb://"
    produced = _produce(ts_env, path)
    workers = []
    for share in (0.2, 0.45, 0.7):
        worker = ts_env.worker()
        workers.append(worker)
        ts_env.wait_committed("outbound", int(candidates * share), worker)
        worker.kill()
    last = ts_env.worker()
    workers.append(last)
    _finish(ts_env, last, offline)
    _check(ts_env, offline, "3x kill -9, rocksdb:// local copy", produced)
    loads = []
    customers = []
    for w in workers:
        # A worker can be killed before it loaded anything: commits may already be past
        # its share when it starts. The first and the last always load.
        text = w.log.read_text(errors="replace")
        found = _LOADED.findall(text)
        assert found or w not in (workers[0], last), w.tail()
        if found:
            loads.append(tuple(map(int, found[0])))
            customers.append(int(_CUSTOMERS.findall(text)[0]))
    print("changelog records read / taken from the local copy, per start:", loads)
    assert len(loads) >= 2, loads
    assert loads[0][1] == 0  # the first start has no copy yet
    for i in range(1, len(loads)):
        # Every restart used the copy: it holds at least every customer the start before
        # loaded (a start writes what it loads into the copy before it is ready). Not
        # necessarily more: a worker can be killed before any write-back of its own was
        # copied (seen: a first worker killed 3.5 s after it was ready, and the restart
        # read 775 records and 0 from the copy, which held the empty first start) ...
        assert loads[i][1] >= customers[i - 1], (loads, customers)
    assert loads[-1][1] > 0, loads
    # ... and one read less of the changelog than the copy held. Not every one: with input
    # still arriving, a kill can land right after a large write-back whose records are
    # acknowledged but not yet in the copy (seen: 1,331 read / 1,091 from the copy, and
    # 8 / 1,508 on the next restart); the copy is then behind, never wrong (checked below).
    assert any(tail < copied for tail, copied in loads[1:]), loads
    # after the clean stop the copy is the changelog, record for record
    topic = f"{ts_env.settings.app_id}-customers-changelog"
    log_view, ends = _changelog_view(ts_env, topic)
    copy = LocalSnapshot(
        Path(ts_env.env["TRIGGER_SANITY_DATA_DIR"]) / "state" / f"{topic}.rocksdb",
        topic,
        PARTITIONS,
        3600.0,
    )
    try:
        for p in range(PARTITIONS):
            assert copy.usable_offset(p, 0, ends[p]) == ends[p] - 1, p
            assert dict(copy.items(p)) == log_view[p], p
    finally:
        copy.close()


def test_partitions_that_move_away_and_back_with_the_rocksdb_local_copy_stay_exact(
    ts_env: Env, history: tuple[Path, list, int]
) -> None:
    """Worker A (its own data dir) shares partitions with B, is killed, comes back while
    B holds everything, and ends with all of them after B stops: each partition A gets
    back is loaded from A's older copy plus the changelog B wrote meanwhile."""
    path, offline, candidates = history
    _fresh(ts_env, "rm")
    dirs = {w: ts_env.tmp / f"data-{w}" for w in "AB"}

    def start(name: str) -> WorkerProc:
        ts_env.env["TRIGGER_SANITY_STORE"] = "rocksdb://"
        ts_env.env["TRIGGER_SANITY_DATA_DIR"] = str(dirs[name])
        return ts_env.worker()

    produced = _produce(ts_env, path)
    a = start("A")
    ts_env.wait_committed("outbound", int(candidates * 0.15), a)
    b = start("B")
    ts_env.wait_committed("outbound", int(candidates * 0.35), b)
    a.kill()  # B takes A's partitions after the session timeout
    ts_env.wait_committed("outbound", int(candidates * 0.55), b)
    a = start("A")  # A's copy is behind on every partition now
    ts_env.wait_committed("outbound", int(candidates * 0.75), a)
    b.stop()
    _finish(ts_env, a, offline)
    _check(ts_env, offline, "rocksdb:// partitions moving away and back", produced)
    found = [tuple(map(int, f)) for f in _LOADED.findall(a.log.read_text(errors="replace"))]
    print("restarted A, per assignment: changelog records read / from its copy:", found)
    # an older copy completed by what B wrote meanwhile
    assert any(tail > 0 and copied > 0 for tail, copied in found), a.tail()
    topic = f"{ts_env.settings.app_id}-customers-changelog"
    log_view, ends = _changelog_view(ts_env, topic)
    copy = LocalSnapshot(dirs["A"] / "state" / f"{topic}.rocksdb", topic, PARTITIONS, 3600.0)
    try:  # A stopped cleanly owning every partition: its copy is the changelog
        for p in range(PARTITIONS):
            assert copy.usable_offset(p, 0, ends[p]) == ends[p] - 1, p
            assert dict(copy.items(p)) == log_view[p], p
    finally:
        copy.close()


def _changelog_view(ts_env: Env, topic: str) -> tuple[dict[int, dict[bytes, bytes]], list[int]]:
    """Each changelog partition read whole, latest value per key, and its end offset."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        **ts_env.settings.kafka_consumer_kwargs(),
    )  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        view: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for rec in consumer:
                if rec.value is None:
                    view[rec.partition].pop(rec.key, None)
                else:
                    view[rec.partition][rec.key] = rec.value
        return view, [ends[tp] for tp in tps]
    finally:
        consumer.close()


def test_kill_9_while_re_routing_crc32_input(ts_env: Env, history: tuple[Path, list, int]) -> None:
    path, offline, candidates = history
    _fresh(ts_env, "kr")
    produced = Feed(lambda: produce_crc32(ts_env.settings, path, FEED_RATE), FEED_RATE)
    for share in (0.3, 0.6):
        worker = ts_env.worker()
        ts_env.wait_committed("outbound", int(candidates * share), worker)
        worker.kill()
    _finish(ts_env, ts_env.worker(), offline)
    _check(ts_env, offline, "kill -9 during re-routing (crc32)", produced)


def test_sigterm_mid_stream_writes_nothing_twice(
    ts_env: Env, history: tuple[Path, list, int]
) -> None:
    path, offline, candidates = history
    _fresh(ts_env, "st")
    produced = _produce(ts_env, path)
    worker = ts_env.worker()
    ts_env.wait_committed("outbound", int(candidates * 0.4), worker)
    worker.stop()  # SIGTERM: a clean stop
    assert worker.proc.returncode == 0, worker.tail()
    _finish(ts_env, ts_env.worker(), offline)
    _check(ts_env, offline, "SIGTERM mid-stream", produced)


OUTAGE_S = 12
"""How long the broker stays dead: longer than every timeout that could take it for
idleness (the fetch freshness, the marker expiry, the idle check)."""


@pytest.mark.parametrize("feeding", ["backlog", "live"])
def test_broker_killed_for_seconds_mid_stream_changes_no_decision(
    ts_env: Env, history: tuple[Path, list, int], feeding: str
) -> None:
    """A broker outage delays decisions and never changes them: the worker's fetches stop
    being answered, so no partition counts as caught up, and nothing is released on a
    stale idea of where the streams end. ``live``: the input still arrives (the producer
    retries through the outage), as in the field."""
    port, pid_file = _own_broker(ts_env, "restarted")
    path, offline, candidates = history
    _fresh(ts_env, f"br{feeding[0]}")
    produced = _produce(ts_env, path, rate=None if feeding == "backlog" else FEED_RATE)
    worker = ts_env.worker()
    ts_env.wait_committed("outbound", int(candidates * 0.3), worker)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the broker dies mid-stream
    time.sleep(OUTAGE_S)  # the outage itself: seconds without a broker
    subprocess.run([sys.executable, str(LOCAL_KAFKA), "start", "--port", port], check=True)
    _finish(ts_env, worker, offline)
    _check(ts_env, offline, f"broker kill -9 for {OUTAGE_S} s and restart ({feeding})", produced)


def test_sigterm_with_the_broker_down_exits_within_the_session_timeout(
    ts_env: Env, history: tuple[Path, list, int]
) -> None:
    port, pid_file = _own_broker(ts_env, "stopped")
    path, offline, candidates = history
    _fresh(ts_env, "sd")
    produced = _produce(ts_env, path, rate=None)  # all in before the broker goes down
    worker = ts_env.worker()
    ts_env.wait_committed("outbound", int(candidates * 0.3), worker)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        worker.proc.wait(timeout=ts_env.settings.session_timeout + 10)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
    finally:
        took = time.monotonic() - began
        worker.fh.close()
        subprocess.run([sys.executable, str(LOCAL_KAFKA), "start", "--port", port], check=True)
    print(f"\nSIGTERM with the broker down: exited {worker.proc.returncode} after {took:.1f} s")
    assert took <= ts_env.settings.session_timeout, worker.tail()
    # and nothing was lost by stopping that way
    _finish(ts_env, ts_env.worker(), offline)
    _check(ts_env, offline, "SIGTERM with the broker down, then a restart", produced)


def test_second_worker_takes_over_from_a_killed_one(
    ts_env: Env, history: tuple[Path, list, int]
) -> None:
    path, offline, candidates = history
    _fresh(ts_env, "tw")
    produced = _produce(ts_env, path)
    first = ts_env.worker()
    ts_env.wait_committed("outbound", int(candidates * 0.15), first)
    second = ts_env.worker()
    ts_env.wait_committed("outbound", int(candidates * 0.4), second)
    first.kill()  # its partitions and held candidates move to the second after the timeout
    _finish(ts_env, second, offline)
    _check(ts_env, offline, "two workers, one killed", produced)
