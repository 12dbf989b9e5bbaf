"""``trigger-sanity capture``: the input topics over a time range, as a history file.

An incident in production becomes a file that replays offline (or into other
topics) to the decisions the workers made: each record is written with its
topic role, key, record time and value bytes exactly as they are in Kafka.
Records are written in the order each partition holds them; how partitions
interleave in the file does not change a replay's decisions (the contract:
each (topic, partition)'s stream, in order, is what counts). Every partition
is positioned by record time with the broker's time index and read up to the
first offset after ``--to``: nothing before the range is read.

A value that is not JSON cannot be a history line; such records (the ones the
worker dead-lettered) are counted and left out.

Limit: topics written by a producer with another partitioner (librdkafka's
crc32) spread one customer-partition's stream over several Kafka partitions.
The worker re-routes those records carrying their source partition's
progress; a history file has no place for the source partition, so the
replay of such a capture reads each stream in record-time order instead,
and can differ from the workers' decisions where records were out of time
order across source partitions (the README gives the share measured on a
generated history produced with crc32). Captures of murmur2-partitioned topics
replay exactly.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition

from streams.contract.topics import INPUT_ROLES
from streams.core.clock import iso
from streams.kafka.reader import assign_all, open_reader
from streams.settings import Settings


@dataclass
class Captured:
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[tuple[str, int, int, str]] = field(default_factory=list)  # topic, p, off, why

    @property
    def records(self) -> int:
        return sum(self.counts.values())


def _is_json_object(raw: bytes) -> bool:
    stripped = raw.lstrip()
    if not stripped.startswith(b"{"):
        return False
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits, which the contract allows in payloads
        import json

        try:
            json.loads(raw)
        except ValueError:
            return False
    return True


def _write(fh: Any, rec: Any, role: str, got: Captured) -> None:
    raw = rec.value
    if raw is None or not _is_json_object(raw):
        got.skipped.append((rec.topic, rec.partition, rec.offset, "not JSON"))
        return
    key = b"null" if rec.key is None else orjson.dumps(rec.key.decode("utf-8", "replace"))
    fh.write(
        b'{"topic":"' + role.encode() + b'","key":' + key
        + b',"timestamp":"' + iso(rec.timestamp).encode()
        + b'","value":' + raw.strip() + b"}\n"
    )  # fmt: skip
    got.counts[role] += 1


def _range(
    consumer: Any, tps: list[TopicPartition], from_ms: int, to_ms: int
) -> tuple[dict[TopicPartition, int], set[TopicPartition]]:
    """Each partition positioned at its first record at or after ``from_ms``; where it
    stops (its first record after ``to_ms``, or its end); the partitions with anything
    in the range."""
    ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
    start = consumer.offsets_for_times({tp: from_ms for tp in tps})
    stop = consumer.offsets_for_times({tp: to_ms + 1 for tp in tps})
    todo = set()
    for tp in tps:
        first = start.get(tp)
        consumer.seek(tp, first.offset if first is not None else ends[tp])
        after = stop.get(tp)
        ends[tp] = after.offset if after is not None else ends[tp]
        if consumer.position(tp) < ends[tp]:
            todo.add(tp)
    return ends, todo


def capture(
    settings: Settings,
    from_ms: int,
    to_ms: int,
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> Captured:
    names = {settings.topics[r]: r for r in INPUT_ROLES}
    consumer = open_reader(settings)
    got = Captured()
    try:
        tps = assign_all(consumer, settings, names)
        ends, todo = _range(consumer, tps, from_ms, to_ms)
        # A k-way merge by record time: each partition's records stay in their order, and
        # the partitions are interleaved the way time interleaved them. A topic written
        # by a producer with another partitioner (crc32) holds one customer-partition's
        # stream spread over several Kafka partitions; written one Kafka partition after
        # another, that stream would run through time twice, and a replay would read the
        # second run as late. Memory: one fetch per partition.
        buffers: dict[TopicPartition, deque[Any]] = {tp: deque() for tp in todo}
        heap: list[tuple[int, int, TopicPartition]] = []
        seq = 0
        with open(out, "wb") as fh:
            while todo or heap:
                empty = [tp for tp in todo if not buffers[tp]]
                if empty:
                    consumer.resume(*empty)
                    consumer.pause(*[tp for tp in tps if tp not in empty])
                    for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
                        for rec in records:
                            if rec.offset < ends[tp]:
                                buffers[tp].append(rec)
                        if consumer.position(tp) >= ends[tp]:
                            todo.discard(tp)
                    for tp in empty:
                        if buffers[tp] and not any(e[2] == tp for e in heap):
                            heapq.heappush(heap, (buffers[tp][0].timestamp, seq, tp))
                            seq += 1
                    continue
                # every partition still to read has a head buffered: the oldest head goes
                _ts, _s, tp = heapq.heappop(heap)
                rec = buffers[tp].popleft()
                _write(fh, rec, names[rec.topic], got)
                if buffers[tp]:
                    heapq.heappush(heap, (buffers[tp][0].timestamp, seq, tp))
                    seq += 1
                if progress is not None and got.records % 5000 == 0:
                    progress(got.records)
    finally:
        consumer.close()
    return got
