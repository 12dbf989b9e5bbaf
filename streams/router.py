"""One input record in, the records to write out: the worker's logic without Kafka.

The faust shell (``app``) only moves bytes: it hands each consumed record to
``Router.on_record`` and writes the ``OutRecord``s it gets back, in order.
Everything between (decode once, dead-letter what cannot be read, re-route
what sits on the wrong partition, ingest, release by stream time, render
decisions) is here, so it is unit-tested without a broker and the offline
replay and the worker cannot drift apart.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from streams import codec
from streams.engine import Decided, Engine, LateFinding, Output
from streams.outputs import late_value, send_value, suppressed_value
from streams.partitioning import partition_for

log = logging.getLogger("trigger_sanity.worker")


@dataclass(slots=True, frozen=True)
class OutRecord:
    """A record to produce. ``role`` is a topic role (``send_queue``...) or, for a
    re-routed input record, ``reroute:<topic name>``."""

    role: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    timestamp_ms: int | None = None


class Router:
    def __init__(
        self,
        engine: Engine,
        role_of: dict[str, str],
        partitions_of: Callable[[str], int],
        max_record_bytes: int = codec.DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.engine = engine
        self.policy = engine.policy
        self.role_of = role_of
        self.partitions_of = partitions_of
        self.max_record_bytes = max_record_bytes
        self.counts: Counter[str] = Counter()

    def on_record(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        key: bytes | None,
        value: bytes | None,
        wall_ms: int,
    ) -> list[OutRecord]:
        role = self.role_of[topic]
        parsed = codec.decode(role, value, record_ms, wall_ms, self.policy, self.max_record_bytes)
        if isinstance(parsed, codec.Unreadable):
            return [self.dead_letter(topic, partition, offset, key, value, parsed.error, wall_ms)]
        cid = parsed.customer_id.encode("utf-8")
        expected = partition_for(parsed.customer_id, self.partitions_of(topic))
        if key != cid or partition != expected:
            # Never decide against the wrong partition's state: send it where it belongs.
            self.counts["rerouted"] += 1
            log.warning(
                "re-routing %s[%d]@%d for customer %s (key %r) to partition %d",
                topic, partition, offset, parsed.customer_id, key, expected,
            )  # fmt: skip
            return [OutRecord(f"reroute:{topic}", cid, value, expected, record_ms)]
        self.counts[role] += 1
        return self.render(
            self.engine.ingest(
                partition,
                role,
                parsed.customer_id,
                parsed.event_ms,
                parsed.fact,
                record_ms,
                source=offset,
            )
        )

    def dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        wall_ms: int,
    ) -> OutRecord:
        self.counts["dead_letter"] += 1
        log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, error)
        return OutRecord(
            "dead_letter",
            key,
            codec.dead_letter(topic, partition, offset, key, value, error, wall_ms),
        )

    def release(self, partition: int, wall_ms: int) -> list[OutRecord]:
        return self.render(self.engine.release(partition, wall_ms))

    def release_idle(self, partition: int, wall_ms: int) -> list[OutRecord]:
        return self.render(self.engine.release_idle(partition, wall_ms))

    def render(self, outputs: list[Output]) -> list[OutRecord]:
        version = self.policy.version
        out: list[OutRecord] = []
        for o in outputs:
            if isinstance(o, Decided):
                c, d = o.candidate, o.decision
                key = c.customer_id.encode("utf-8")
                self.counts[d.action] += 1
                if d.action == "suppress":
                    log.info(
                        "suppressed %s (%s) for %s: %s - %s",
                        c.message_id, c.trigger, c.customer_id, d.rule, d.reason,
                    )  # fmt: skip
                    out.append(OutRecord("suppressed", key, suppressed_value(o, version)))
                else:
                    out.append(OutRecord("send_queue", key, send_value(o, version)))
            elif isinstance(o, LateFinding):
                self.counts["late_evidence"] += 1
                out.append(
                    OutRecord(
                        "late_evidence", o.customer_id.encode("utf-8"), late_value(o, version)
                    )
                )
        return out
