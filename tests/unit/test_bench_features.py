"""The benchmarks' feature switches build what they claim: a feature's cost is only
meaningful if "on" really turns it on and "off" leaves the same input otherwise."""

from __future__ import annotations

import importlib.util
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from streams.core.policy import policy_from_mapping

# bench/ is scripts, not a package: load the one module by its path (sys.path untouched)
_spec = importlib.util.spec_from_file_location(
    "bench_features", Path(__file__).resolve().parents[2] / "bench" / "features.py"
)
assert _spec is not None and _spec.loader is not None
features = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(features)

ALL = frozenset(features.FEATURES)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", [ALL]),
        ("none", [frozenset()]),
        ("links,caps", [frozenset({"links", "caps"})]),
        ("each", [frozenset(), *(frozenset({f}) for f in features.FEATURES), ALL]),
    ],
)
def test_features_option_names_the_runs(spec: str, expected: list[frozenset[str]]) -> None:
    assert features.feature_sets(spec) == expected


def test_an_unknown_feature_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"unknown blasts \(known: campaigns"):
        features.feature_sets("blasts")


@pytest.mark.parametrize("fs", features.feature_sets("each"), ids=features.label)
def test_each_feature_set_is_a_valid_policy_with_exactly_its_features(fs: frozenset[str]) -> None:
    policy = policy_from_mapping(tomllib.loads(features.policy_text(fs)), "bench")
    assert policy.blast.enabled == ("campaigns" in fs)
    assert bool(policy.quiet_hours.channels) == ("quiet_hours" in fs)
    assert bool(policy.caps) == ("caps" in fs)
    assert features.guarantee(fs) == ("exactly_once" if "exactly_once" in fs else "at_least_once")


def test_links_add_guest_checkouts_and_leave_every_other_record_alone() -> None:
    off = features.tidy_records(60, frozenset())
    on = features.tidy_records(60, frozenset({"links"}))
    links = [r for r in on if r["topic"] == "identities"]
    assert links, "no guest checkout in 60 customers"
    assert Counter(r["topic"] for r in on if r["topic"] != "identities") == Counter(
        r["topic"] for r in off
    )
    guests = {r["value"]["customer_id"] for r in on if r["topic"] == "purchases"} - {
        r["value"]["customer_id"] for r in off
    }
    assert guests == {link["value"]["customer_id"] for link in links}
    times = [r["value"].get("occurred_at") or r["value"]["created_at"] for r in on]
    assert times == sorted(times), "the history must stay in event-time order"
