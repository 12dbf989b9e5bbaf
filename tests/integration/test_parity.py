"""Parity: the Kafka worker and the offline replay decide a history identically.

1,000 generated customers (every trigger type, every rule) are produced into
the topics all at once, so the worker reads them in whatever interleaving
its consumer chooses across 8 partitions; every decision must equal the
offline replay's, record for record.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from streams.admin import create_topics
from streams.generator import generate
from streams.history import write_history
from streams.policy import DEFAULT_POLICY, RULE_IDS
from streams.replay import produce_history, replay_offline
from streams.settings import Settings
from tests.integration.conftest import Env

CUSTOMERS = 1000


def _key(d: dict[str, Any]) -> tuple[str, str, str, str | None, tuple[str, ...]]:
    return (d["message_id"], d["customer_id"], d["action"], d["rule"], tuple(d["removed_skus"]))


def _from_send_queue(v: dict[str, Any]) -> dict[str, Any]:
    s = v["sanity"]
    return {
        "message_id": v["message_id"],
        "customer_id": v["customer_id"],
        "action": s["action"],
        "rule": s.get("rule"),
        "removed_skus": s["removed_skus"],
    }


def _from_suppressed(v: dict[str, Any]) -> dict[str, Any]:
    m = v["message"]
    return {
        "message_id": m["message_id"],
        "customer_id": m["customer_id"],
        "action": "suppress",
        "rule": v["rule"],
        "removed_skus": [],
    }


def test_worker_equals_offline_replay(ts_env: Env, tmp_path: Path) -> None:
    # 8 partitions, like production defaults.
    settings = Settings(**{**ts_env.settings.model_dump(), "partitions": 8})
    for role in (
        "purchases",
        "returns",
        "sessions",
        "consents",
        "outbound",
        "send_queue",
        "suppressed",
        "dead_letter",
        "late_evidence",
        "releases",
    ):
        settings = Settings(
            **{**settings.model_dump(), f"topic_{role}": f"{ts_env.settings.topics[role]}8"}
        )
    ts_env.env.update(
        {f"TRIGGER_SANITY_TOPIC_{r.upper()}": settings.topics[r] for r in settings.topics.names}
    )
    ts_env.env["TRIGGER_SANITY_PARTITIONS"] = "8"
    ts_env.settings = settings
    create_topics(settings, log=False, configs={"retention.ms": "-1"})

    history = tmp_path / "history.jsonl.gz"
    write_history(history, generate(CUSTOMERS, seed=2026))
    offline_out = tmp_path / "offline.jsonl"
    with open(offline_out, "wb") as fh:
        summary = replay_offline(history, DEFAULT_POLICY, fh)
    offline = [orjson.loads(x) for x in offline_out.read_bytes().splitlines()]
    assert summary.candidates == len(offline) > 5 * CUSTOMERS
    assert set(RULE_IDS) <= set(summary.rules), "the history must exercise every rule"

    producer = KafkaProducer(
        acks="all", linger_ms=50, batch_size=256 * 1024, **settings.kafka_client_kwargs()
    )  # type: ignore[arg-type]
    names = {
        r: settings.topics[r] for r in ("purchases", "returns", "sessions", "consents", "outbound")
    }
    produced, bad = produce_history(history, producer, names)
    producer.close()
    assert not bad

    started = time.monotonic()
    worker = ts_env.worker()
    try:
        got = ts_env.collect(
            ("send_queue", "suppressed"),
            lambda g: len(g["send_queue"]) + len(g["suppressed"]) >= len(offline),
            timeout=600,
            worker=worker,
        )
        took = time.monotonic() - started
    finally:
        worker.stop()
    # Re-read everything after a clean stop: a duplicate or late extra decision would show here.
    got = ts_env.collect(("send_queue", "suppressed"), lambda g: True)
    live = [_from_send_queue(orjson.loads(r.value)) for r in got["send_queue"]]
    live += [_from_suppressed(orjson.loads(r.value)) for r in got["suppressed"]]
    print(
        f"\nparity: {produced} records, {len(live)} decisions by the worker in {took:.1f}s "
        f"({produced / took:,.0f} records/s end to end incl. startup)"
    )
    want, have = Counter(map(_key, offline)), Counter(map(_key, live))
    missing, unexpected = want - have, have - want
    assert not missing and not unexpected, (
        f"{sum(missing.values())} offline decisions missing live, e.g. {list(missing)[:5]}; "
        f"{sum(unexpected.values())} live decisions not offline, e.g. {list(unexpected)[:5]}"
    )
