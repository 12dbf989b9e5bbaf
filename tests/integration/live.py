"""Helpers the integration tests share: the offline replay a run is checked against,
producing as a foreign (crc32) client, reading decisions back, counting them by
``message_id``, and asking a running worker (its pages, its log).

Plain functions on the fixtures' objects (``Env``, ``WorkerProc``); the fixtures
themselves (the broker, a deployment, a free port) are in ``conftest.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streams.contract.history import BadLine, read_history
from streams.core.policy import DEFAULT_POLICY, Policy
from streams.kafka.admin import create_topics
from streams.offline.replay import replay_offline
from streams.offline.report import Seen
from streams.ops.verify import DecisionKey
from streams.settings import Settings, isolated_env, settings_from_env
from tests.integration.conftest import ROOT, Env, WorkerProc

ParityKey = tuple[str, str, str, str | None, tuple[str, ...], str | None, str | None]
"""message_id, customer_id, action, rule, removed SKUs: a decision as parity compares it."""


# ------------------------------------------------------------------ deployments


def fresh_topics(env: Env, suffix: str, partitions: int, **overrides: str) -> None:
    """Point ``env`` at a deployment of its own (app id and topics ``<app id><suffix>``)
    with ``partitions`` partitions and the given ``TRIGGER_SANITY_*`` overrides, and
    create its topics (time retention off: histories carry old record timestamps)."""
    run = f"{env.settings.app_id}{suffix}"
    env.env.update(
        isolated_env(run, env.settings.bootstrap_servers, partitions=str(partitions), **overrides)
    )
    env.settings = settings_from_env(env.env)
    create_topics(env.settings, log=False, configs={"retention.ms": "-1"})


def cli(
    env: Env | dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``trigger-sanity ARGS`` against the deployment (or with exactly these environment
    variables), output captured, never raising."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env.env if isinstance(env, Env) else env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ------------------------------------------------------------------ the offline side


def offline_decisions(
    history: Path, partitions: int, *, sweep_every: int = 50_000, policy: Policy = DEFAULT_POLICY
) -> list[dict[str, Any]]:
    """The offline replay of a history file (the default policy unless given), one dict
    per decision as ``replay --offline`` writes it (written beside the history as
    ``<name>.offline``)."""
    out = history.with_suffix(".offline")
    with open(out, "wb") as fh:
        replay_offline(history, policy, fh, partitions=partitions, sweep_every=sweep_every)
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def offline_keys(
    history: Path, partitions: int, *, sweep_every: int = 50_000, policy: Policy = DEFAULT_POLICY
) -> list[DecisionKey]:
    """``offline_decisions`` as decision keys: (message_id, action, rule, removed SKUs)."""
    return [
        (d["message_id"], d["action"], d["rule"], tuple(d["removed_skus"]))
        for d in offline_decisions(history, partitions, sweep_every=sweep_every, policy=policy)
    ]


# ------------------------------------------------------------------ producing


def produce_crc32(settings: Settings, history: Path, rate: float | None = None) -> int:
    """Produce a history with confluent-kafka's default partitioner (librdkafka's
    consistent_random: crc32 of the key), in file order; ``rate`` records/s or all at
    once. Gives the number of records produced."""
    from confluent_kafka import Producer

    # Idempotence keeps each partition in the order produced. Without it librdkafka may
    # retry a batch after later ones succeeded (seen here right after the topics were
    # created: a fifth of a partition out of order by days); such input is decided as the
    # late data it is, not as the ordered file the offline replay reads.
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
        }
    )
    names = settings.topics
    sent = 0
    started = time.monotonic()
    for rec in read_history(history):
        assert not isinstance(rec, BadLine), rec
        ts = rec.record_ms if rec.record_ms is not None else rec.event_ms
        producer.produce(names[rec.topic], key=rec.key, value=rec.value, timestamp=ts or 0)
        sent += 1
        if rate is not None and sent % 50 == 0:
            producer.flush()
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing the producer to a live rate, not waiting out a race
        producer.poll(0)
    producer.flush()
    return sent


# ------------------------------------------------------------------ reading decisions


def decided(got: dict[str, list[Any]]) -> int:
    """How many decisions ``Env.collect`` has read so far (send-queue + suppressed)."""
    return len(got["send_queue"]) + len(got["suppressed"])


def decision_keys(got: dict[str, list[Any]]) -> list[DecisionKey]:
    """The decisions read by ``Env.collect``, as (message_id, action, rule, removed SKUs)."""
    out: list[DecisionKey] = []
    for r in got["send_queue"]:
        v = orjson.loads(r.value)
        s = v["sanity"]
        out.append((v["message_id"], s["action"], s.get("rule"), tuple(s["removed_skus"])))
    for r in got["suppressed"]:
        v = orjson.loads(r.value)
        out.append((v["message"]["message_id"], "suppress", v["rule"], ()))
    return out


def live_decisions(got: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The decisions read by ``Env.collect`` in the offline replay's shape (message_id,
    customer_id, action, rule, removed_skus)."""
    live: list[dict[str, Any]] = []
    for r in got["send_queue"]:
        v = orjson.loads(r.value)
        s = v["sanity"]
        live.append(
            {
                "message_id": v["message_id"],
                "customer_id": v["customer_id"],
                "action": s["action"],
                "rule": s.get("rule"),
                "removed_skus": s["removed_skus"],
                "send_at": s.get("send_at"),
                "held_for": s.get("held_for"),
            }
        )
    for r in got["suppressed"]:
        v = orjson.loads(r.value)
        m = v["message"]
        live.append(
            {
                "message_id": m["message_id"],
                "customer_id": m["customer_id"],
                "action": "suppress",
                "rule": v["rule"],
                "removed_skus": [],
                "held_for": v.get("held_for"),
            }
        )
    return live


# ------------------------------------------------------------------ comparing


def _parity_key(d: dict[str, Any]) -> ParityKey:
    """What must be equal: the decision, and (quiet hours) why and until when it was held;
    ``send_at`` is compared for what goes to the send queue (a suppression has none)."""
    send_at = d.get("send_at") if d["action"] != "suppress" else None
    return (d["message_id"], d["customer_id"], d["action"], d["rule"], tuple(d["removed_skus"]),
            d.get("held_for"), send_at)  # fmt: skip


def assert_same(offline: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    """The same decisions, copy for copy (dicts as ``offline_decisions`` gives them)."""
    want, have = Counter(map(_parity_key, offline)), Counter(map(_parity_key, live))
    missing, unexpected = want - have, have - want
    assert not missing and not unexpected, (
        f"{sum(missing.values())} offline decisions missing live, e.g. {list(missing)[:5]}; "
        f"{sum(unexpected.values())} live decisions not offline, e.g. {list(unexpected)[:5]}"
    )


def conservation(offline: list[DecisionKey], live: list[DecisionKey]) -> dict[str, Any]:
    """By message_id: what the worker lost, decided differently (with a few examples),
    or wrote twice."""
    want: dict[str, Counter[DecisionKey]] = {}
    for k in offline:
        want.setdefault(k[0], Counter())[k] += 1
    have: dict[str, Counter[DecisionKey]] = {}
    for k in live:
        have.setdefault(k[0], Counter())[k] += 1
    missing = different = duplicated = 0
    examples: list[str] = []
    for mid, w in want.items():
        h = have.get(mid, Counter())
        n_w, n_h = sum(w.values()), sum(h.values())
        if n_h < n_w:
            missing += n_w - n_h
        if n_h > n_w:
            duplicated += n_h - n_w
        if set(h) - set(w):
            different += 1
            if len(examples) < 5:
                examples.append(f"{mid}: offline {sorted(w)} live {sorted(h)}")
    unexpected = sum(sum(h.values()) for mid, h in have.items() if mid not in want)
    return {
        "records_decided_offline": len(offline),
        "decided_live": len(live),
        "missing": missing,
        "different": different,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "different_examples": examples,
    }


# ------------------------------------------------------------------ a running worker


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes] | None:
    """GET a page of the worker's web server on 127.0.0.1: (status, body), or None
    while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def stats(port: int) -> dict[str, Any]:
    """The worker's stats page (``/stats/``), parsed."""
    res = get(port, "/stats/", timeout=10)
    assert res is not None and res[0] == 200, res
    data: dict[str, Any] = orjson.loads(res[1])
    return data


def wait_logged(worker: WorkerProc, text: str, timeout: float = 60) -> None:
    """Wait until ``text`` is anywhere in the worker's log (the whole file, not a tail a
    busy log could scroll it out of); fails if the worker exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while text not in worker.log.read_text(errors="replace"):
        assert worker.proc.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"worker never logged {text!r}:\n{worker.tail()}"
        time.sleep(0.2)  # polling the worker's log for a line, bounded by the deadline


def log_records(worker: WorkerProc) -> list[dict[str, Any]]:
    """The worker's JSON log lines (``TRIGGER_SANITY_LOG_FORMAT=json``), parsed, in
    order; a line still being written is left out."""
    out: list[dict[str, Any]] = []
    for line in worker.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def logged_at(worker: WorkerProc, prefix: str, timeout: float = 60) -> float:
    """Wall time (seconds since the epoch, as ``time.time()``) of the worker's first JSON
    log line whose message starts with ``prefix``; waits for that line (bounded). The
    log's ``time`` is cut to the millisecond: never later than the event it records."""
    deadline = time.monotonic() + timeout
    while True:
        for rec in log_records(worker):
            if rec["message"].startswith(prefix):
                return datetime.fromisoformat(rec["time"]).timestamp()
        assert worker.proc.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"worker never logged {prefix!r}:\n{worker.tail()}"
        time.sleep(0.2)  # polling the worker's log for a line, bounded by the deadline


def worker_decides_as_offline(
    ts_env: Env, policy: Path, offline: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """A worker under ``policy`` through the produced input until all is decided; after
    a clean stop, all it wrote equals the offline decisions. Gives its decisions and its
    whole log."""
    worker = ts_env.worker(policy=policy)
    try:
        ts_env.collect(("send_queue", "suppressed"), lambda g: decided(g) >= len(offline),
                       timeout=600, worker=worker)  # fmt: skip
    finally:
        worker.stop()
    live = live_decisions(ts_env.collect(("send_queue", "suppressed"), lambda g: True))
    assert_same(offline, live)
    return live, worker.log.read_text(errors="replace")


def seen_of(live: list[dict[str, Any]]) -> list[Seen]:
    """Live decisions as the report's accuracy reads them."""
    return [Seen(d["message_id"], d["customer_id"], "", 0, d["action"], d["rule"], None, (), "")
            for d in live]  # fmt: skip
