"""The Kafka worker against the realistic generator's ground truth (2,000 customers).

Every candidate's decision, copy by copy (a retried message id is decided
twice), must be the one the contract requires, as the generator built it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streams.contract.topics import INPUT_ROLES
from streams.offline.report import read_truth
from streams.offline.scenarios import write_realistic
from streams.ops.produce import produce_history
from tests.integration.conftest import Env


def test_the_worker_reaches_precision_and_recall_1_on_a_realistic_history(
    ts_env: Env, tmp_path: Path
) -> None:
    history, truth_path = tmp_path / "h.jsonl", tmp_path / "h.truth.jsonl"
    _records, candidates = write_realistic(history, truth_path, 2_000, seed=77)
    truth = read_truth(truth_path)
    producer = ts_env.producer()
    names = {r: ts_env.settings.topics[r] for r in INPUT_ROLES}
    _n, bad = produce_history(history, producer, names)
    producer.close()
    assert not bad
    worker = ts_env.worker()

    def done(g: dict[str, list[Any]]) -> bool:
        return len(g["send_queue"]) + len(g["suppressed"]) >= candidates

    got = ts_env.collect(("send_queue", "suppressed", "dead_letter"), done, worker=worker,
                         timeout=300)  # fmt: skip
    worker.stop()
    live: dict[str, Counter[tuple[str, str | None]]] = {}
    for rec in got["send_queue"]:
        v = orjson.loads(rec.value)
        s = v["sanity"]
        live.setdefault(v["message_id"], Counter())[(s["action"], s.get("rule"))] += 1
    for rec in got["suppressed"]:
        v = orjson.loads(rec.value)
        live.setdefault(v["message"]["message_id"], Counter())[("suppress", v["rule"])] += 1
    assert not got["dead_letter"]
    wrong = {m: (live.get(m), want) for m, want in truth.items() if live.get(m) != want}
    assert not wrong, f"{len(wrong)} of {len(truth)} differ, e.g. {list(wrong.items())[:5]}"
    assert sum(sum(c.values()) for c in live.values()) == candidates
