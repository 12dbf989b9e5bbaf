"""What the person on call runs against the topics: inspect by time and field."""

from __future__ import annotations

import time
from typing import Any

import orjson

from streams.contract.partitioning import partition_for
from tests.integration.conftest import Env, WorkerProc
from tests.integration.live import cli, get, logged_at


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
        res = cli(ts_env, "inspect", "suppressed", "--json", *args)
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

    res = cli(ts_env, "inspect", "suppressed", "--since", "yesterday")
    assert res.returncode == 2 and "neither a duration" in res.stderr


Answer = tuple[float, int | None]
"""A /readyz answer: the wall time it came back (``time.time()``) and its status (None:
nothing listened yet)."""


def _readiness_until_ready(port: int, worker: WorkerProc, timeout: float = 120) -> list[Answer]:
    """Every /readyz answer from now until the first 200, each with the time it came back."""
    seen: list[Answer] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1][1] != 200:
        assert worker.proc.poll() is None, worker.tail()
        assert time.monotonic() < deadline, (seen[-20:], worker.tail())
        got = get(port, "/readyz")
        seen.append((time.time(), None if got is None else got[0]))
        time.sleep(0.02)  # polling the endpoint, bounded by the deadline
    return seen


def _assert_ready_only_once_recovered(seen: list[Answer], worker: WorkerProc) -> None:
    """Whenever the polls happened to land: no answer that came back before the worker
    logged "state recovered" was a 200, and the first 200 came back after that line (the
    worker marks itself recovered and logs the line with no await in between, so no
    request is answered in between)."""
    recovered = logged_at(worker, "state recovered")
    early = [status for at, status in seen if at < recovered]
    assert 200 not in early, (early[-20:], recovered, worker.tail())
    first_ready = next(at for at, status in seen if status == 200)
    assert first_ready >= recovered, (first_ready, recovered, seen[-20:])


def test_health_readiness_through_a_restart_and_metrics_match_what_was_decided(
    ts_env: Env, free_port: int
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.helpers import msg, purchase, session

    port = free_port
    ts_env.env.update({"TRIGGER_SANITY_WEB_ENABLED": "true", "TRIGGER_SANITY_WEB_PORT": str(port),
                       "TRIGGER_SANITY_LOG_FORMAT": "json"})  # fmt: skip
    worker = ts_env.worker()
    # not ready before the state is recovered, whenever the polls landed
    _assert_ready_only_once_recovered(_readiness_until_ready(port, worker), worker)
    health = get(port, "/healthz")
    assert health is not None and health[0] == 200
    ready = get(port, "/readyz")
    assert ready is not None and orjson.loads(ready[1])["partitions"] == [0, 1, 2, 3]

    ts_env.produce(
        [
            msg("m-wb", "welcome_back", "10:00"),  # a new customer: suppressed
            msg("m-w", "welcome", "10:01", cid="c-9"),  # already bought: suppressed
            purchase("09:00", cid="c-9"),
            msg("m-p", "promotion", "10:02", cid="c-5"),  # sent
            session("11:00"),
            session("11:00", cid="c-9"),
            session("11:00", cid="c-5"),
            {"topic": "purchases", "raw": b'{"event_id": "p-bad"', "key": b"c-5"},
        ]
    )
    got = ts_env.collect(
        ("send_queue", "suppressed", "dead_letter"),
        lambda g: len(g["suppressed"]) >= 2 and len(g["send_queue"]) >= 1 and g["dead_letter"],
        worker=worker,
    )
    deadline = time.monotonic() + 30
    while True:  # the counts are taken as outputs are rendered: scrape until they show
        res = get(port, "/metrics")
        assert res is not None and res[0] == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(res[1].decode())
            for s in fam.samples
        }
        if samples.get(("trigger_sanity_decisions_total", (("action", "send"),))) == 1:
            break
        assert time.monotonic() < deadline, samples
        time.sleep(0.2)  # polling the endpoint, bounded by the deadline
    assert samples[("trigger_sanity_decisions_total", (("action", "suppress"),))] == len(
        got["suppressed"]
    )
    rules = {
        dict(labels)["rule"]: v
        for (name, labels), v in samples.items()
        if name == "trigger_sanity_rule_decisions_total"
    }
    assert rules == {"welcome_back_to_new_customer": 1, "welcome_to_existing_customer": 1}
    assert samples[("trigger_sanity_dead_letters_total", ())] == len(got["dead_letter"]) == 1
    assert samples[("trigger_sanity_decision_latency_seconds_count", ())] == 3
    assert samples[("trigger_sanity_held_candidates", ())] == 0
    assert samples[("trigger_sanity_ready", ())] == 1
    lags = [v for (n, _l), v in samples.items() if n == "trigger_sanity_consumer_lag"]
    assert lags and all(v >= 0 for v in lags)
    # exactly-once: the decisions became visible through committed transactions
    assert samples[("trigger_sanity_transactions_committed_total", ())] >= 1
    assert samples[("trigger_sanity_transactions_aborted_total", ())] == 0
    assert samples[("trigger_sanity_producers_fenced_total", ())] == 0
    assert samples[("trigger_sanity_transaction_commit_seconds_count", ())] >= 1
    shown = cli(ts_env, "stats", "--since", "30d", "--url", f"http://127.0.0.1:{port}")
    assert shown.returncode == 0, shown.stderr
    assert "transactions (this worker since its start): committed" in shown.stdout
    assert "aborted 0  fenced 0" in shown.stdout

    url = f"http://127.0.0.1:{port}"
    res = cli(ts_env, "state", "c-9", "--url", url)
    assert res.returncode == 0, res.stderr
    st = orjson.loads(res.stdout)
    assert st["customer_id"] == "c-9" and st["partition"] == partition_for("c-9", 4)
    assert [p["occurred_at"][:16] for p in st["purchases"]] == ["2026-11-20T09:00"]
    assert st["held"] == [] and len(st["sessions_started"]) == 1
    res = cli(ts_env, "state", "c-unknown", "--url", url)
    assert res.returncode == 1 and "no state for customer c-unknown" in res.stderr

    worker.stop()
    assert get(port, "/healthz") is None  # gone with the process
    # structured logs: every log line one JSON object; payloads never in them
    text = worker.log.read_text()
    logged = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(logged) > 10 and all(
        {"time", "level", "logger", "message"} <= set(r) for r in logged
    )
    assert any(r["message"].startswith("state recovered") for r in logged)
    assert "template" not in text  # the payloads' content
    res = cli(ts_env, "state", "c-9", "--url", url)
    assert res.returncode == 2 and "did not answer" in res.stderr
    again = ts_env.worker()
    _assert_ready_only_once_recovered(_readiness_until_ready(port, again), again)
    again.stop()


def test_explain_then_release_with_the_worker_down_happens_once_and_on_record(
    ts_env: Env,
) -> None:
    from tests.helpers import msg, session

    worker = ts_env.worker()
    ts_env.produce(
        [
            msg("m-wb", "welcome_back", "10:00"),  # a new customer: suppressed
            msg("m-p", "promotion", "10:02", cid="c-5"),  # sent
            session("11:00"),
            session("11:00", cid="c-5"),
        ]
    )
    ts_env.collect(
        ("send_queue", "suppressed"),
        lambda g: len(g["suppressed"]) >= 1 and len(g["send_queue"]) >= 1,
        worker=worker,
    )
    worker.stop()  # everything below works with no worker running

    res = cli(ts_env, "explain", "m-wb", "--customer", "c-42")
    assert res.returncode == 0, res.stderr
    assert "m-wb: SUPPRESSED by welcome_back_to_new_customer (policy default-1)" in res.stdout
    assert "reason: the customer has started only 0 sessions" in res.stdout
    res = cli(ts_env, "explain", "m-p")
    assert res.returncode == 0 and "m-p: SEND to the send queue (policy default-1)" in res.stdout
    res = cli(ts_env, "explain", "m-none")
    assert res.returncode == 1 and "m-none is not on" in res.stderr

    first = cli(ts_env, "release", "m-wb", "--reason", "CRM says returning", "--by", "alice")
    assert first.returncode == 0, first.stderr
    assert "released m-wb (customer c-42, suppressed by welcome_back_to_new_customer)" in (
        first.stdout
    )
    second = cli(ts_env, "release", "m-wb", "--reason", "again", "--by", "bob")
    assert second.returncode == 1
    assert "m-wb was already released at" in second.stderr and "by alice" in second.stderr
    missing = cli(ts_env, "release", "m-p", "--reason", "not suppressed")
    assert missing.returncode == 1 and "no suppressed record of m-p" in missing.stderr

    got = ts_env.collect(
        ("send_queue", "releases"),
        lambda g: len(g["send_queue"]) >= 2 and len(g["releases"]) >= 1,
        timeout=30,
    )
    sent = [orjson.loads(r.value) for r in got["send_queue"]]
    released = [v for v in sent if v["message_id"] == "m-wb"]
    assert len(released) == 1
    assert released[0]["sanity"]["released"]["by"] == "alice"
    assert released[0]["sanity"]["released"]["rule"] == "welcome_back_to_new_customer"
    assert released[0]["payload"] == {"template": "welcome_back-1"}  # the message as written
    audits = [orjson.loads(r.value) for r in got["releases"]]
    assert [(a["message_id"], a["released_by"], a["note"]) for a in audits] == [
        ("m-wb", "alice", "CRM says returning")
    ]
    res = cli(ts_env, "explain", "m-wb")
    assert "RELEASED by hand" in res.stdout and "release on record: by alice" in res.stdout

    res = cli(ts_env, "stats", "--since", "1h", "--interval", "5m", "--json")
    assert res.returncode == 0, res.stderr
    stats = orjson.loads(res.stdout)
    assert stats["decisions"] == 2 and stats["suppression_rate"] == 0.5
    assert stats["actions"] == {"send": 1, "suppress": 1, "released": 1}
    assert stats["rules"] == {"welcome_back_to_new_customer": 1}
    assert stats["triggers"] == {"welcome_back": 1, "promotion": 1}
    assert sum(stats["per_rule_per_interval"]["welcome_back_to_new_customer"]) == 1
    assert len(stats["per_rule_per_interval"]["welcome_back_to_new_customer"]) == 12
    assert stats["held_now"] is None  # no worker answers
    res = cli(ts_env, "stats", "--since", "1h")
    assert "suppress 1 (50.0%)" in res.stdout and "not reachable" in res.stdout
