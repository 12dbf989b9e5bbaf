"""Read the output topics for people: one readable line per decision.

Used by ``trigger-sanity inspect`` (ops reading the suppressed topic at
3 a.m.) and by the demo to print decisions as they happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from streams.settings import Settings


def describe(role: str, value: bytes | None) -> str:
    """A one-line summary of an output record; falls back to the raw text."""
    if value is None:
        return f"[{role}] (null)"
    try:
        rec: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f"[{role}] {value[:200]!r}"
    if role == "suppressed":
        m = rec.get("message", {})
        return (
            f"SUPPRESS {m.get('message_id')} {m.get('trigger')} -> {m.get('customer_id')}: "
            f"{rec.get('rule')}: {rec.get('reason')}"
        )
    if role == "send_queue":
        s = rec.get("sanity", {})
        extra = (
            f" (removed {', '.join(s.get('removed_skus', []))}: {s.get('rule')})"
            if s.get("action") == "rewrite"
            else ""
        )
        return (
            f"{s.get('action', '?').upper():8} {rec.get('message_id')} {rec.get('trigger')} -> "
            f"{rec.get('customer_id')}{extra}"
        )
    if role == "dead_letter":
        where = f"{rec.get('topic')}[{rec.get('partition')}]@{rec.get('offset')}"
        return f"DEAD     {where}: {rec.get('error')}"
    if role == "late_evidence":
        ev = rec.get("event", {})
        return (
            f"LATE     {rec.get('message_id')} ({rec.get('rule')}): {ev.get('topic')} "
            f"{ev.get('event_id')} arrived {rec.get('late_by_ms')} ms after the deadline"
        )
    return f"[{role}] {orjson.dumps(rec).decode()}"


def consume(
    settings: Settings,
    roles: tuple[str, ...],
    from_beginning: bool = True,
    timeout_ms: int = 1000,
    stop: Callable[[], bool] | None = None,
    follow: bool = False,
) -> Iterator[tuple[str, Any]]:
    """Yield (role, ConsumerRecord) from the output topics, without a consumer group."""
    topics = settings.topics
    names = {topics[r]: r for r in roles}
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
        **settings.kafka_consumer_kwargs(),
    )
    try:
        tps: list[TopicPartition] = []
        for name in names:
            parts = consumer.partitions_for_topic(name) or set()
            tps.extend(TopicPartition(name, p) for p in sorted(parts))
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        while True:
            got = False
            for rec in consumer:
                got = True
                yield names[rec.topic], rec
                if stop is not None and stop():
                    return
            if stop is not None and stop():
                return
            if not follow and not got:
                return
    finally:
        consumer.close()


def matches(role: str, value: bytes | None, rule: str | None, customer: str | None) -> bool:
    if rule is None and customer is None:
        return True
    try:
        rec = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return False
    if not isinstance(rec, dict):
        return False
    msg = rec.get("message", rec)
    if rule is not None and rec.get("rule", (rec.get("sanity") or {}).get("rule")) != rule:
        return False
    return not (customer is not None and msg.get("customer_id") != customer)
