"""The CLI against a real broker: topic creation and the README's demo."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.contract.topics import REGISTRY
from streams.errors import BrokerError
from streams.kafka.admin import create_topics, partition_counts
from streams.settings import Settings
from tests.integration.conftest import ROOT


def _settings(bootstrap: str, prefix: str, partitions: int = 3) -> Settings:
    names = {f"topic_{t.role}": f"{prefix}{t.default_name}" for t in REGISTRY}
    return Settings(  # type: ignore[arg-type]
        bootstrap_servers=bootstrap, partitions=partitions, app_id=prefix.rstrip("."), **names
    )


def test_topics_create_is_idempotent_and_co_partitioned(kafka_bootstrap: str) -> None:
    s = _settings(kafka_bootstrap, f"c{uuid.uuid4().hex[:8]}.")
    first = create_topics(s, log=False)
    # the control topics (policy versions, campaign commands): one partition, compacted
    control = (s.topics["policy"], s.topics["campaigns"])
    assert [first.pop(c) for c in control] == ["created (1 partitions)"] * 2
    assert all(v.startswith("created (3 partitions)") for v in first.values()), first
    assert s.reroute_topic in first  # the app's internal re-route topic, co-partitioned too
    second = create_topics(s, log=False)
    assert [second.pop(c) for c in control] == ["exists (1 partitions)"] * 2
    assert all(v == "exists (3 partitions)" for v in second.values()), second
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        data = s.topics.inputs + s.topics.outputs
        assert set(partition_counts(admin, data).values()) == {3}
        for c in control:
            cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, c)])
            entries = {e[0]: e[1] for e in cfg[0].resources[0][4]}
            assert entries["cleanup.policy"] == "compact", c
    finally:
        admin.close()


def test_topics_create_refuses_inputs_that_are_not_co_partitioned(kafka_bootstrap: str) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(f"{prefix}returns", 5, 1)])
    finally:
        admin.close()
    with pytest.raises(BrokerError, match="not co-partitioned"):
        create_topics(_settings(kafka_bootstrap, prefix), log=False)


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "list"],
        ["worker"],
        ["inspect", "suppressed"],
        ["verify"],
        ["replay", "tests/data/contract_history.jsonl"],
    ],
)
def test_no_broker_is_a_clear_error(command: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        env={"TRIGGER_SANITY_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert "127.0.0.1:1" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # one line, what to do
    assert "TRIGGER_SANITY_BOOTSTRAP_SERVERS" in res.stderr


def test_worker_refuses_topics_that_are_missing_or_not_co_partitioned(kafka_bootstrap: str) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    env = {
        "PATH": "/usr/bin:/bin",
        "TRIGGER_SANITY_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRIGGER_SANITY_APP_ID": prefix.rstrip("."),
        "TRIGGER_SANITY_PARTITIONS": "8",
    }
    env.update(
        {f"TRIGGER_SANITY_TOPIC_{t.role.upper()}": f"{prefix}{t.default_name}" for t in REGISTRY}
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )

    res = cli("worker")
    assert res.returncode == 2 and "missing topics" in res.stderr, res.stderr
    assert "trigger-sanity topics create" in res.stderr
    # replay into Kafka: the same one line and exit 2, before a record is produced
    res = cli("replay", "tests/data/contract_history.jsonl")
    assert res.returncode == 2 and "missing topics" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert f"{prefix}purchases" in res.stderr and "produced" not in res.stdout
    create_topics(_settings(kafka_bootstrap, prefix, partitions=8), log=False)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # a 4-partition outbound beside 8-partition inputs
        admin.delete_topics([f"{prefix}outbound"])
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.create_topics([NewTopic(f"{prefix}outbound", 4, 1)])
                break
            except TopicAlreadyExistsError:  # deletion still in progress
                assert time.monotonic() < deadline
                time.sleep(0.5)  # polling the broker until the deletion completed
    finally:
        admin.close()
    res = cli("worker")
    assert res.returncode == 2 and "not co-partitioned" in res.stderr, res.stderr
    assert f"{prefix}outbound=4" in res.stderr


def test_readme_demo_prints_suppressions_with_rule_and_reason(kafka_bootstrap: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--timeout", "120"],
        env={"TRIGGER_SANITY_BOOTSTRAP_SERVERS": kafka_bootstrap, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert (
        "SUPPRESS m-cart-ada abandoned_cart -> c-ada: cart_already_purchased: order o-ada-1" in out
    )
    assert "welcome_back_to_new_customer" in out and "duplicate_message" in out
    assert "REWRITE  m-rec-cy product_recommendation -> c-cy (removed SKU-9" in out
    assert "DEAD " in out and "items.0.sku: Field required" in out
    assert "all 8 candidates decided" in out


TOOL_VERBS = [
    ("verify", ["verify"]),
    ("inspect", ["inspect", "suppressed"]),
    ("stats", ["stats", "--since", "1h"]),
    ("explain", ["explain", "m-1"]),
    ("release", ["release", "m-1", "--reason", "test"]),
    ("capture", ["capture", "--from", "1h", "--out", "/dev/null"]),
    ("topics_list", ["topics", "list"]),
]


def _env(bootstrap: str, prefix: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "TRIGGER_SANITY_BOOTSTRAP_SERVERS": bootstrap,
        "TRIGGER_SANITY_APP_ID": prefix.rstrip("."),
        "TRIGGER_SANITY_PARTITIONS": "3",
        "TRIGGER_SANITY_WEB_PORT": "1",  # stats asks a worker that is not there
    }
    env.update(
        {f"TRIGGER_SANITY_TOPIC_{t.role.upper()}": f"{prefix}{t.default_name}" for t in REGISTRY}
    )
    return env


def _run(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("verb", "args"), TOOL_VERBS, ids=[v for v, _a in TOOL_VERBS])
def test_every_tool_on_a_broker_without_the_topics_fails_with_one_line(
    kafka_bootstrap: str, verb: str, args: list[str]
) -> None:
    """No traceback, no "OK", no table header or zeros first: exit 2 and the one line
    naming what is missing and what to run."""
    prefix = f"n{uuid.uuid4().hex[:8]}."
    res = _run(_env(kafka_bootstrap, prefix), args)
    assert res.returncode == 2, (verb, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "OK" not in res.stdout, (verb, res.stderr)
    assert prefix in res.stderr and "topics create" in res.stderr, (verb, res.stderr)
    if verb != "topics_list":  # the listing itself is its output
        assert res.stdout == "", (verb, res.stdout)
        assert len(res.stderr.strip().splitlines()) == 1, (verb, res.stderr)


@pytest.mark.parametrize("verb", ["verify", "inspect", "stats", "explain"])
def test_a_tool_with_some_topics_missing_names_exactly_those(
    kafka_bootstrap: str, verb: str
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    create_topics(_settings(kafka_bootstrap, prefix), log=False)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_topics([f"{prefix}suppressed", f"{prefix}dead-letter"])
    finally:
        admin.close()
    args = dict(TOOL_VERBS)[verb]
    deadline = time.monotonic() + 60
    while True:  # the deletion reaches every broker's metadata a little later
        res = _run(_env(kafka_bootstrap, prefix), args)
        if res.returncode == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling the broker until the deletion is visible, bounded
    assert res.returncode == 2, (verb, res.stdout, res.stderr)
    assert f"{prefix}suppressed" in res.stderr, (verb, res.stderr)
    if verb != "inspect":  # inspect suppressed reads that topic alone
        assert f"{prefix}dead-letter" in res.stderr, (verb, res.stderr)
    assert f"{prefix}send-queue" not in res.stderr and "OK" not in res.stdout
