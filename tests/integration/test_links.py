"""Identity links through a real broker, 8 partitions, guests on other partitions than
their accounts (``generate --profile realistic --links``: 2,000 customers, a third of
the purchases by a guest id linked at checkout, plus late, unlinked, chained and
cyclic links):

- the worker's decisions equal the offline replay's, record for record, and the
  truth's: precision and recall 1.0; the refused links are dead-lettered once each;
- three ``kill -9`` while links and copies of facts travel between partitions:
  nothing missing, different or written twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.policy import DEFAULT_POLICY
from streams.offline.replay import replay_offline
from streams.offline.report import read_truth
from streams.offline.scenarios import write_realistic
from tests.integration import test_exactly_once
from tests.integration.conftest import Env, feed_history
from tests.integration.live import (
    fresh_topics,
    offline_decisions,
    worker_decides_as_offline,
)
from tests.integration.test_delivery import _check, _finish
from tests.integration.test_exactly_once import Visible, kill_at_shares

PARTITIONS = 8
visible = test_exactly_once.visible  # the fixture: a read_committed view of the decisions
pytestmark = pytest.mark.timeout(1200)


@dataclass(frozen=True)
class Linked:
    path: Path
    truth: Path
    offline: list[dict[str, Any]]


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Linked:
    tmp = tmp_path_factory.mktemp("links")
    path, truth = tmp / "links.jsonl", tmp / "links.truth.jsonl"
    write_realistic(path, truth, 2_000, seed=25, links=True)
    return Linked(path, truth, offline_decisions(path, PARTITIONS))


def test_the_worker_decides_guest_checkouts_as_offline_and_as_the_truth(
    ts_env: Env, linked: Linked
) -> None:
    fresh_topics(ts_env, "lk", PARTITIONS)
    feed_history(ts_env.settings, linked.path, rate=None).wait()
    live, log = worker_decides_as_offline(ts_env, _default_policy(ts_env), linked.offline)
    truth = read_truth(linked.truth)
    got: dict[str, Counter[tuple[str, str | None]]] = {}
    for d in live:
        got.setdefault(d["message_id"], Counter())[(d["action"], d["rule"])] += 1
    wrong = {m: (got.get(m), want) for m, want in truth.items() if got.get(m) != want}
    assert not wrong, f"{len(wrong)} of {len(truth)} differ, e.g. {list(wrong.items())[:5]}"
    dead = ts_env.collect(("dead_letter",), lambda g: len(g["dead_letter"]) >= 17)["dead_letter"]
    refused = [orjson.loads(r.value) for r in dead]
    assert len(refused) == 17, [r["error"] for r in refused]  # the cycles' closing links
    assert all("would make a cycle" in r["error"] for r in refused)
    assert {r["topic"] for r in refused} == {ts_env.settings.topics["identities"]}
    assert "identity link refused" in log
    # late evidence, across groups too, is the offline replay's, finding for finding
    late_file = linked.path.with_suffix(".late")
    with open(late_file, "wb") as fh:
        replay_offline(linked.path, DEFAULT_POLICY, None, late_out=fh, partitions=PARTITIONS)
    want_late = sorted((d["message_id"], d["event_id"], d["rule"])
                       for d in map(orjson.loads, late_file.read_bytes().splitlines()))  # fmt: skip
    assert want_late, "the history has no late evidence to compare"
    late = ts_env.collect(("late_evidence",), lambda g: len(g["late_evidence"]) >= len(want_late))
    got_late = sorted((v["message_id"], v["event"]["event_id"], v["rule"])
                      for v in (orjson.loads(r.value) for r in late["late_evidence"]))  # fmt: skip
    assert got_late == want_late


def _default_policy(ts_env: Env) -> Path:
    path = ts_env.tmp / "default.toml"
    path.write_text('version = "default-1"\n')
    return path


def test_three_kill_9_while_links_travel_write_nothing_twice(
    ts_env: Env, linked: Linked, visible: Callable[[], Visible]
) -> None:
    """Every partition's links and copies of facts are on their way between partitions
    when its worker is killed: the restart reads the links back from the changelog, and
    the decisions are the offline replay's, none missing, different or twice."""
    fresh_topics(ts_env, "lk9", PARTITIONS, idle_after="2")
    feed = feed_history(ts_env.settings, linked.path, rate=None)
    feed.wait()
    owed = len(linked.offline)
    logs = kill_at_shares(ts_env, visible(), owed)
    restored = max(int(t.split(" identity link rows")[0].rsplit(" ", 1)[1]) for t in logs)
    assert restored > 100, "a restart read no identity links back from the changelog"
    last = ts_env.worker()
    offline = [(d["message_id"], d["action"], d["rule"], tuple(d["removed_skus"]))
               for d in linked.offline]  # fmt: skip
    _finish(ts_env, last, offline)
    result = _check(ts_env, offline, "3x kill -9 while links travel", feed)
    assert result.decisions == owed, result.render()
