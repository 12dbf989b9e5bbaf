"""Reading a control topic whole: the policy versions and the campaign commands are both
compacted one-partition topics keyed by a sequence number, read from the beginning to
their end by the commands that show or extend them (kafka-python, read committed)."""

from __future__ import annotations

import time
from typing import TypeVar

import orjson
from kafka import KafkaConsumer, TopicPartition
from pydantic import BaseModel

from streams.errors import PolicyError
from streams.settings import Settings

R = TypeVar("R", bound=BaseModel)


def read_control(
    settings: Settings, role: str, model: type[R], missing: str, timeout_s: float = 10.0
) -> list[R]:
    """Every record of the control topic of ``role``, in sequence order (compaction keeps
    the last per sequence number). ``missing``: what to say when the topic is not there."""
    name = settings.topics[role]
    consumer = KafkaConsumer(enable_auto_commit=False, **settings.kafka_consumer_kwargs())
    try:
        parts = consumer.partitions_for_topic(name)
        if not parts:
            raise PolicyError(f"{role} topic {name} does not exist: {missing}")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: dict[int, R] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise PolicyError(f"reading {role} topic {name} timed out after {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    if rec.value is None:
                        continue
                    got = model.model_validate(orjson.loads(rec.value))
                    out[got.seq] = got  # type: ignore[attr-defined]
        return [out[k] for k in sorted(out)]
    finally:
        consumer.close()
