"""Topic administration with kafka-python: create the contract's topics, co-partitioned."""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, NoBrokersAvailable, TopicAlreadyExistsError

from streams.errors import BrokerError
from streams.hints import command
from streams.settings import Settings


def admin_client(settings: Settings, timeout_ms: int = 15_000) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            client_id=f"{settings.app_id}-admin",
            request_timeout_ms=timeout_ms,
            **settings.kafka_client_kwargs(),
        )
    except (NoBrokersAvailable, KafkaError) as exc:
        raise BrokerError(
            f"no Kafka broker answers at {settings.bootstrap_servers}: start one "
            "(make kafka-start) or set TRIGGER_SANITY_BOOTSTRAP_SERVERS"
        ) from exc


def partition_counts(admin: KafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Topic -> partition count, for the named topics the broker knows about."""
    out: dict[str, int] = {}
    for meta in admin.describe_topics(list(names)):
        if meta["error_code"] == 0 and meta["partitions"]:
            out[meta["topic"]] = len(meta["partitions"])
    return out


def _wait_visible(admin: KafkaAdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """Under KRaft a CreateTopics answer can come before the broker's metadata shows the
    topic: check co-partitioning only once every topic is visible (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = partition_counts(admin, names)
        if len(counts) == len(names) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)  # polling broker metadata, bounded by the deadline


def create_topics(
    settings: Settings, log: bool = True, configs: dict[str, str] | None = None
) -> dict[str, str]:
    """Create every topic of the contract (idempotent); returns topic -> what happened.

    Input topics must all have the same partition count: a pre-existing input
    topic with a different count is an error, since co-partitioning is what
    lets one worker own all of a customer's state.
    """
    topics = settings.topics
    names = (*topics.all, settings.reroute_topic)
    admin = admin_client(settings)
    try:
        counts = partition_counts(admin, names)
        result: dict[str, str] = {}
        control = set(topics.control)
        new = [
            NewTopic(
                name,
                1 if name in control else settings.partitions,
                settings.replication_factor,
                # control topics keep every key's latest record for good
                topic_configs={"cleanup.policy": "compact"}
                if name in control
                else dict(configs or {}),
            )
            for name in names
            if name not in counts
        ]
        if new:
            try:
                admin.create_topics(new, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race; counts are checked below
            except KafkaError as exc:
                raise BrokerError(f"creating topics failed: {exc}") from exc
        final = _wait_visible(admin, list(names), timeout=30.0)
    finally:
        admin.close()
    for name in names:
        if name in counts:
            result[name] = f"exists ({counts[name]} partitions)"
        else:
            result[name] = f"created ({final.get(name, '?')} partitions)"
    missing = [n for n in names if n not in final]
    if missing:
        raise BrokerError(f"topics not visible 30s after creating them: {', '.join(missing)}")
    co = (*topics.inputs, settings.reroute_topic)
    input_counts = {final[n] for n in co}
    if len(input_counts) != 1:
        detail = ", ".join(f"{n}={final.get(n)}" for n in co)
        raise BrokerError(
            f"input topics are not co-partitioned ({detail}); they must all have the same "
            "partition count - recreate them or add partitions with kafka-topics --alter"
        )
    if log:
        for name, what in result.items():
            print(f"{name}: {what}")
    return result


def check_inputs(settings: Settings) -> int:
    """Before the worker starts: every input and output topic and the re-route topic exist,
    and the inputs and the re-route topic are co-partitioned. Returns their partition
    count; raises ``BrokerError`` saying what to do.

    A worker started on a 4-partition ``outbound`` beside 8-partition inputs would hold
    candidates forever; better not to start at all."""
    names = (*settings.topics.inputs, settings.reroute_topic)
    outputs = tuple(
        settings.topics[r] for r in ("send_queue", "suppressed", "dead_letter", "late_evidence")
    )
    admin = admin_client(settings)
    try:
        # a topic created a moment ago may not be in the metadata yet: look again briefly
        counts = _wait_visible(admin, list(names + outputs), timeout=5.0)
    finally:
        admin.close()
    missing = [n for n in names + outputs if n not in counts]
    counts = {n: c for n, c in counts.items() if n in names}
    if missing:
        raise BrokerError(
            f"missing topics on {settings.bootstrap_servers}: {', '.join(missing)}; "
            f"create them with `{command('topics', 'create')}` (again after an upgrade: a "
            "release may add an input, as identity links added `identities`)"
        )
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{n}={counts[n]}" for n in names)
        raise BrokerError(
            f"input topics are not co-partitioned ({detail}); they must all have the same "
            "partition count"
        )
    return next(iter(counts.values()))
