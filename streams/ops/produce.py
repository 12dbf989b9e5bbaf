"""Produce a history file into the input topics (``trigger-sanity replay FILE``): in file
order, keyed by customer with the contract's murmur2 partitioner, as fast as possible
or at a speed-up of the original event times, optionally rebased so that it ends now.
"""

from __future__ import annotations

import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streams.contract import rawjson
from streams.contract.history import (
    EVENT_TIME_FIELD,
    BadLine,
    HistoryRecord,
    parse_time,
    read_history,
)
from streams.contract.partitioning import murmur2
from streams.contract.topics import INPUT_ROLES
from streams.core.clock import iso
from streams.processing.records import H_OPEN, open_header

if TYPE_CHECKING:
    from streams.settings import Settings


def rebase_delta(path: str | Path, now_ms: int) -> int:
    """How far to shift a history's times so that its last event is ``now_ms``."""
    latest = max(
        (r.event_ms for r in read_history(path) if isinstance(r, HistoryRecord) and r.event_ms),
        default=None,
    )
    return 0 if latest is None else now_ms - latest


_TIME_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "outbound": (("created_at",), ("context", "cart_updated_at")),
}


def rebased(topic: str, value: bytes, delta: int) -> bytes:
    """The value with its time fields moved by ``delta`` ms; every other byte as written
    (the fields are found by the scanner, not by parsing the whole value: a payload may
    hold integers orjson refuses)."""
    for path in _TIME_PATHS.get(topic, ((EVENT_TIME_FIELD[topic],),)):
        start, at = 0, None
        try:
            for key in path:
                at = rawjson.span(value, key, start)
                if at is None:
                    break
                start = at[0]
        except (ValueError, IndexError):  # not a JSON object: left as it is
            return value
        if at is None:
            continue
        try:
            t = parse_time(orjson.loads(value[at[0] : at[1]]))
        except orjson.JSONDecodeError:
            continue
        if t is not None:
            value = rawjson.replace_in(value, path, orjson.dumps(iso(t + delta)))
    return value


PARTITIONERS: dict[str, Callable[[bytes, int], int]] = {
    # the Java client's default (also kafka-python's and aiokafka's): the contract's
    "murmur2": lambda key, n: (murmur2(key) & 0x7FFFFFFF) % n,
    # librdkafka's default ("consistent_random" for keyed records), as kcat and
    # confluent-kafka produce unless told otherwise: the worker re-routes these
    "crc32": lambda key, n: zlib.crc32(key) % n,
}


def stream_ends(
    path: str | Path, partitions: int, partitioner: str = "murmur2"
) -> dict[tuple[str, int], int]:
    """(input role, Kafka partition) -> the line of its last record in the file."""
    place = PARTITIONERS[partitioner]
    ends: dict[tuple[str, int], int] = {}
    for rec in read_history(path, full=False):
        if isinstance(rec, HistoryRecord) and rec.key is not None:
            ends[(rec.topic, place(rec.key, partitions))] = rec.line_no
    return ends


def judged_otherwise(path: str | Path, partitions: int, partitioner: str) -> int:
    """How many records of the file land behind a later event time on the partition
    ``partitioner`` puts them on but not on their customer's (murmur2) partition, or the
    other way round. The workers forward a misplaced record to its customer's partition
    but judge whether it is late on the stream it came in on, so each such record can be
    decided against otherwise than the offline replay does."""
    if partitioner == "murmur2":
        return 0
    place, home = PARTITIONERS[partitioner], PARTITIONERS["murmur2"]
    latest: dict[tuple[str, int], int] = {}
    latest_home: dict[tuple[str, int], int] = {}
    differ = 0
    for rec in read_history(path):
        if not isinstance(rec, HistoryRecord) or rec.key is None or rec.event_ms is None:
            continue
        flags = []
        for streams, where in ((latest, place(rec.key, partitions)),
                               (latest_home, home(rec.key, partitions))):  # fmt: skip
            stream = (rec.topic, where)
            seen = streams.get(stream)
            flags.append(seen is not None and rec.event_ms < seen)
            if seen is None or rec.event_ms > seen:
                streams[stream] = rec.event_ms
        differ += flags[0] != flags[1]
    return differ


def _open_header(
    replay_id: str, ends: dict[tuple[str, int], int], partition: int, line: int
) -> tuple[tuple[str, bytes], ...]:
    """The ``ts-open`` header of a record: the roles of its partition with records still
    to come after ``line`` (see ``streams.processing.records.H_OPEN``)."""
    still = [role for role in INPUT_ROLES if ends.get((role, partition), -1) > line]
    return ((H_OPEN, open_header(replay_id, still)),)


def produce_history(
    path: str | Path,
    producer: Any,
    topic_names: dict[str, str],
    speedup: float | None = None,
    progress: Callable[[int], None] | None = None,
    rebase_ms: int = 0,
    counts: Counter[str] | None = None,
    partitions: int | None = None,
    partitioner: str = "murmur2",
) -> tuple[int, list[tuple[int, str]]]:
    """Produce a history file into the input topics in file order (kafka-python producer;
    keys as in the file or the customer id).

    ``speedup``: None = as fast as possible; otherwise event-time gaps are
    replayed ``speedup`` times faster than they happened. ``rebase_ms``: shift every
    event and record time by this much (``rebase_delta``: the history ends now).
    ``partitions``: the input topics' partition count; with it each record goes to the
    partition ``partitioner`` gives, carrying which streams of that partition have
    records still to come (``ts-open``), so that the workers read the replay as the
    offline replay reads the file, at any speed and in any order of the file. Without
    it, the producer's partitioner places the records and nothing is announced.
    """
    place = PARTITIONERS[partitioner]
    ends = stream_ends(path, partitions, partitioner) if partitions else {}
    replay_id = uuid.uuid4().hex[:8]
    sent = 0
    bad: list[tuple[int, str]] = []
    first_event: int | None = None
    wall_start = time.monotonic()
    for rec in read_history(path):
        if isinstance(rec, BadLine):
            bad.append((rec.line_no, rec.error))
            continue
        if speedup and rec.event_ms is not None:
            if first_event is None:
                first_event = rec.event_ms
            due = wall_start + (rec.event_ms - first_event) / 1000 / speedup
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the replay, not waiting out a race
        ts = rec.record_ms if rec.record_ms is not None else rec.event_ms
        value = rec.value
        if rebase_ms:
            value = rebased(rec.topic, value, rebase_ms)
            ts = None if ts is None else ts + rebase_ms
        partition = None
        headers: tuple[tuple[str, bytes], ...] = ()
        if partitions and rec.key is not None:
            partition = place(rec.key, partitions)
            headers = _open_header(replay_id, ends, partition, rec.line_no)
        producer.send(topic_names[rec.topic], key=rec.key, value=value, timestamp_ms=ts,
                      partition=partition, headers=list(headers) or None)  # fmt: skip
        sent += 1
        if counts is not None:
            counts[rec.topic] += 1
        if progress is not None:
            progress(sent)
    producer.flush()
    return sent, bad


@dataclass
class Produced:
    sent: int = 0
    seconds: float = 0.0  # producing and flushing, not the checks before
    counts: Counter[str] = field(default_factory=Counter)  # records per input role
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, why) left out


def produce_file(
    settings: Settings,
    path: str | Path,
    speedup: float | None = None,
    rebase: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    partitioner: str = "murmur2",
) -> Produced:
    """Produce a history file into the configured input topics.

    The broker and every topic are checked first, so that a missing one is a line
    saying what to do before anything is sent. ``on_start`` gets the rebase shift in ms
    (0 without ``rebase``) once the checks passed, before the first record: a caller
    can say so and size a progress bar without paying for it when the broker is down."""
    from kafka import KafkaProducer

    from streams.kafka.admin import check_inputs

    partitions = check_inputs(settings)
    delta = rebase_delta(path, int(time.time() * 1000)) if rebase else 0
    if on_start is not None:
        on_start(delta)
    got = Produced()
    producer = KafkaProducer(linger_ms=20, **settings.kafka_producer_kwargs())
    try:
        names = {r: settings.topics[r] for r in INPUT_ROLES}
        started = time.perf_counter()
        got.sent, got.bad = produce_history(
            path, producer, names, speedup, progress, delta, got.counts, partitions, partitioner
        )
    finally:
        producer.close()
    got.seconds = time.perf_counter() - started
    return got


def print_progress(prefix: str) -> Callable[[int], None]:
    def report(n: int) -> None:
        print(f"{prefix}: {n:,} records", file=sys.stderr, flush=True)

    return report
