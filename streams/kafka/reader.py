"""Reading topics without a consumer group: the tools' one way to open a consumer and
take every partition of the topics they read.

Operator tools (inspect, explain, release, stats, capture, verify, policy history)
read output and control topics directly: no consumer group, so they commit nothing
and move nobody's offsets. Blocking (kafka-python).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.contract.partitioning import partition_for
from streams.errors import BrokerError
from streams.hints import command
from streams.settings import Settings


def open_reader(settings: Settings, timeout_ms: int = 1000, **extra: Any) -> KafkaConsumer:
    """A consumer without a group, reading committed records only (the settings'
    consumer options); ``timeout_ms``: how long iteration waits for a record."""
    return KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
        **{**settings.kafka_consumer_kwargs(), **extra},
    )


def assign_all(
    consumer: KafkaConsumer,
    settings: Settings,
    names: Iterable[str],
    customer: str | None = None,
) -> list[TopicPartition]:
    """Assign every partition of every topic in ``names`` (only the one ``customer``
    belongs to, when given), or raise ``BrokerError`` naming every topic that is missing."""
    names = list(names)
    found: dict[str, set[int]] = {}
    missing: list[str] = []
    for name in names:
        parts = consumer.partitions_for_topic(name)
        if not parts:
            missing.append(name)
        else:
            found[name] = parts
    if missing:
        raise BrokerError(
            f"{'topic' if len(missing) == 1 else 'topics'} {', '.join(missing)} "
            f"{'does' if len(missing) == 1 else 'do'} not exist on "
            f"{settings.bootstrap_servers}: create them with `{command('topics', 'create')}`"
        )
    tps: list[TopicPartition] = []
    for name in names:
        parts = found[name]
        if customer is not None:
            parts = {partition_for(customer, len(parts))}
        tps.extend(TopicPartition(name, p) for p in sorted(parts))
    consumer.assign(tps)
    return tps
