"""The worker against a real broker: exact outputs, dead letters, re-routing, a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.contract.partitioning import partition_for
from tests.helpers import cart, msg, purchase, session
from tests.integration.conftest import Env
from tests.integration.live import decided, stats


def _values(recs: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in recs]


def test_small_history_exact_outputs(ts_env: Env) -> None:
    history = [
        session("09:58"),
        cart("m-1", "10:00", "09:59"),
        purchase("10:02", eid="p-1", order="o-9"),  # within the 5 min settle
        session("10:00", cid="c-new"),
        msg("m-2", "welcome_back", "10:01", cid="c-new"),  # a brand-new visitor
        msg("m-3", "promotion", "10:03", cid="c-7", payload={"t": "bf"}),
        msg("m-3", "promotion", "10:04", cid="c-7", payload={"t": "bf"}),  # the duplicate
        {"topic": "purchases", "raw": b'{"event_id": "p-bad", "customer_id": ', "key": b"c-42"},
        session("11:00"),
        session("11:00", cid="c-new"),
        session("11:00", cid="c-7"),  # time moves on
    ]
    ts_env.produce(history)
    worker = ts_env.worker()
    try:
        got = ts_env.collect(
            ("send_queue", "suppressed", "dead_letter"),
            lambda g: decided(g) >= 4 and len(g["dead_letter"]) >= 1,
            worker=worker,
        )
    finally:
        worker.stop()
    sent = _values(got["send_queue"])
    suppressed = _values(got["suppressed"])
    dead = _values(got["dead_letter"])
    # send-queue: the first m-3 exactly as received, plus the sanity block
    assert len(sent) == 1
    sanity = sent[0].pop("sanity")
    assert sent[0] == msg("m-3", "promotion", "10:03", cid="c-7", payload={"t": "bf"})["value"]
    assert (
        sanity["action"] == "send"
        and sanity["removed_skus"] == []
        and sanity["policy"] == "default-1"
    )
    assert sanity["held_ms"] >= 0 and sanity["decided_at"].endswith("Z")
    # suppressed: rule, reason and evidence as in the contract
    by_id = {(s["message"]["message_id"], s["rule"]): s for s in suppressed}
    assert sorted(by_id) == [
        ("m-1", "cart_already_purchased"),
        ("m-2", "welcome_back_to_new_customer"),
        ("m-3", "duplicate_message"),
    ]
    cart_s = by_id[("m-1", "cart_already_purchased")]
    assert cart_s["message"] == cart("m-1", "10:00", "09:59")["value"]
    assert cart_s["evidence"] == [
        {"topic": "purchases", "event_id": "p-1", "occurred_at": "2026-11-20T10:02:00Z"}
    ]
    assert cart_s["reason"] == (
        "order o-9 was placed at 2026-11-20 10:02 UTC, after the cart was last "
        "updated at 2026-11-20 09:59 UTC"
    )
    assert cart_s["policy"] == "default-1"
    wb = by_id[("m-2", "welcome_back_to_new_customer")]
    assert wb["reason"].startswith("the customer has started only 1 session")
    # dead-letter: topic, partition, offset, key, raw value, a clear error
    assert len(dead) == 1
    d = dead[0]
    assert d["topic"] == ts_env.settings.topics["purchases"] and d["key"] == "c-42"
    assert d["partition"] == partition_for("c-42", 4) and d["offset"] == 1
    assert d["value"] == '{"event_id": "p-bad", "customer_id": ' and d["value_encoding"] == "utf-8"
    assert d["error"].startswith("not valid JSON at byte")


def test_bad_input_never_stops_the_worker(ts_env: Env) -> None:
    bad: list[dict[str, Any]] = [
        {"topic": "outbound", "raw": b"\xff\xfe\x00", "key": b"c-1"},
        {"topic": "outbound", "raw": b"[]", "key": None},
        {
            "topic": "sessions",
            "raw": orjson.dumps({**session("10:00")["value"], "kind": "paused"}),
            "key": b"c-42",
        },
        {"topic": "consents", "raw": b"", "key": b"c-42"},
        {"topic": "purchases", "raw": b'{"x": "' + b"a" * 300_000 + b'"}', "key": b"c-42"},
    ]
    ts_env.produce([*bad, msg("m-ok", "promotion", "10:00"), session("10:05")])
    worker = ts_env.worker()
    try:
        got = ts_env.collect(
            ("send_queue", "suppressed", "dead_letter"),
            lambda g: len(g["dead_letter"]) >= 5 and decided(g) >= 1,
            worker=worker,
        )
    finally:
        worker.stop()
    errors = sorted(orjson.loads(r.value)["error"] for r in got["dead_letter"])
    assert any("kind: Input should be 'started' or 'ended'" in e for e in errors)
    assert any("over the limit" in e for e in errors)
    binary = [
        orjson.loads(r.value)
        for r in got["dead_letter"]
        if orjson.loads(r.value)["value_encoding"] == "base64"
    ]
    assert len(binary) == 1
    assert [orjson.loads(r.value)["message_id"] for r in got["send_queue"]] == ["m-ok"]


def test_misrouted_records_are_rerouted_and_decided_once(ts_env: Env) -> None:
    right = partition_for("c-42", 4)
    wrong = (right + 1) % 4
    null_keyed = msg("m-null", "promotion", "10:01", channel="sms")
    history = [
        {**session("09:00"), "partition": wrong},  # wrong partition
        {**session("09:30"), "key": "not-the-customer"},  # wrong key
        {**msg("m-wb", "welcome_back", "10:00"), "partition": wrong},  # needs both sessions
        {  # no key at all; record time = created_at, so not stale
            "topic": "outbound",
            "raw": orjson.dumps(null_keyed["value"]),
            "key": None,
            "timestamp_ms": 1795168860000,  # 2026-11-20T10:01:00Z
        },
        session("11:00"),
    ]
    ts_env.produce(history)
    worker = ts_env.worker()
    try:
        got = ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= 2, worker=worker)
    finally:
        worker.stop()
    # both sessions reached the right state (welcome_back needs two), the key-less message
    # was decided on its customer's partition, and everything exactly once
    sent = sorted(orjson.loads(r.value)["message_id"] for r in got["send_queue"])
    assert sent == ["m-null", "m-wb"]
    assert got["suppressed"] == []
    assert all(r.partition == right and r.key == b"c-42" for r in got["send_queue"])
    log = worker.log.read_text()
    # loud, once per topic (rate-limited), naming the topic and the fix
    for role in ("sessions", "outbound"):
        name = ts_env.settings.topics[role]
        assert f"{name}: 1 record(s) so far on the wrong partition" in log, log
    assert "partitioner=murmur2_random" in log
    # forwarded through the app's own topic, never written back into the inputs
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        **ts_env.settings.kafka_consumer_kwargs(),
    )  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(ts_env.settings.topics[r], p) for r in ("sessions", "outbound")
               for p in range(4)]  # fmt: skip
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    assert sum(ends.values()) == 5  # exactly what was produced


def test_held_message_survives_a_crash(ts_env: Env, tmp_path: Path) -> None:
    """A cart held for its settle delay is in the changelog; after kill -9 it is decided once."""
    now = datetime.now(UTC).replace(microsecond=0)
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    created = now - timedelta(minutes=1)
    policy = tmp_path / "p.toml"
    policy.write_text('version = "crash-test"\n[settle]\nabandoned_cart = "30m"\n')
    ts_env.produce([cart("m-held", iso(created), iso(created - timedelta(minutes=1)))])
    first = ts_env.worker(policy)
    try:
        # Wait until the outbound offset is committed: after the crash nothing re-reads
        # the candidate, so only the changelogged table can bring it back.
        ts_env.wait_committed("outbound", 1, first, timeout=120)
    finally:
        first.kill()
    second = ts_env.worker(policy)
    try:
        ts_env.produce(
            [
                purchase(iso(created + timedelta(minutes=2)), eid="p-after"),
                session(iso(created + timedelta(minutes=31))),
            ]
        )
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= 1, worker=second)
        # Both new records committed = processed: a second decision of m-held would have been
        # written before the commit that covers the session past its deadline.
        ts_env.wait_committed("sessions", 1, second, timeout=120)
        ts_env.wait_committed("purchases", 1, second, timeout=120)
        got = ts_env.collect(("send_queue", "suppressed"), lambda g: True, worker=second)
    finally:
        second.stop()
    sup = [orjson.loads(r.value) for r in got["suppressed"]]
    assert [(s["message"]["message_id"], s["rule"], s["policy"]) for s in sup] == [
        ("m-held", "cart_already_purchased", "crash-test")
    ]
    assert got["send_queue"] == []


def test_late_evidence_reports_what_got_through(ts_env: Env) -> None:
    """A purchase that reaches Kafka after its cart mail was sent is reported, not re-decided."""
    ts_env.produce([cart("m-late", "10:00", "09:59"), session("10:30")])
    worker = ts_env.worker()
    try:
        got = ts_env.collect(("send_queue",), lambda g: len(g["send_queue"]) >= 1, worker=worker)
        assert [orjson.loads(r.value)["message_id"] for r in got["send_queue"]] == ["m-late"]
        ts_env.produce(
            [
                {
                    **purchase("10:03", eid="p-late", order="o-late"),
                    "timestamp": "2026-11-20T10:40:00Z",
                }
            ]
        )
        got = ts_env.collect(
            ("late_evidence", "suppressed"), lambda g: len(g["late_evidence"]) >= 1, worker=worker
        )
    finally:
        worker.stop()
    late = orjson.loads(got["late_evidence"][0].value)
    assert late == {
        "message_id": "m-late",
        "customer_id": "c-42",
        "trigger": "abandoned_cart",
        "rule": "cart_already_purchased",
        "reason": late["reason"],
        "event": {
            "topic": "purchases",
            "event_id": "p-late",
            "occurred_at": "2026-11-20T10:03:00Z",
        },
        "deadline": "2026-11-20T10:05:00Z",
        "decided": "send",
        "would_have": "suppress",
        "late_by_ms": 35 * 60_000,  # a settle delay 35 min longer would have caught it
        "behind_ms": 0,  # it was not behind its topic: lateness would not have helped
        "policy": "default-1",
    }
    assert late["reason"].startswith("order o-late was placed at 2026-11-20 10:03 UTC")
    assert got["suppressed"] == []  # the decision already made stands


def test_quiet_partition_releases_by_wall_clock_and_stats_page(
    ts_env: Env, tmp_path: Path, free_port: int
) -> None:
    """Nothing else arrives: the held cart goes out once receipt + settle has passed."""
    policy = tmp_path / "p.toml"
    policy.write_text('version = "wall"\n[settle]\nabandoned_cart = "4s"\n')
    now = datetime.now(UTC).replace(microsecond=0)
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    ts_env.produce([cart("m-quiet", iso(now), iso(now - timedelta(minutes=1)))])
    port = free_port
    ts_env.env.update({"TRIGGER_SANITY_WEB_ENABLED": "true", "TRIGGER_SANITY_WEB_PORT": str(port)})
    worker = ts_env.worker(policy)
    try:
        got = ts_env.collect(("send_queue",), lambda g: len(g["send_queue"]) >= 1, worker=worker)
        shown = stats(port)
    finally:
        worker.stop()
    sent = orjson.loads(got["send_queue"][0].value)
    assert sent["message_id"] == "m-quiet" and sent["sanity"]["policy"] == "wall"
    assert sent["sanity"]["held_ms"] >= 4000  # held for the settle delay, by the wall clock
    assert shown["worker"]["send"] == 1 and shown["worker"]["outbound"] == 1
    assert shown["held"] == 0 and shown["policy"] == "wall"


def test_inspect_filters_suppressions_by_rule(ts_env: Env) -> None:
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    ts_env.produce([msg("m-wb", "welcome_back", "10:00"), msg("m-w", "welcome", "10:01",
                    cid="c-9"), purchase("09:00", cid="c-9"), session("11:00"),
                    session("11:00", cid="c-9")])  # fmt: skip
    worker = ts_env.worker()
    try:
        ts_env.collect(("suppressed",), lambda g: len(g["suppressed"]) >= 2, worker=worker)
    finally:
        worker.stop()
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "inspect", "suppressed", "--rule",
         "welcome_to_existing_customer"],
        env=ts_env.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    header, *lines = res.stdout.strip().splitlines()
    assert header.startswith("AGE") and "REASON" in header
    assert len(lines) == 1, res.stdout
    cells = lines[0].split()
    assert cells[1:5] == ["welcome_to_existing_customer", "c-9", "welcome", "m-w"]
    assert "the customer already placed order" in lines[0]
    assert "1 shown of 2 read from every partition" in res.stderr
