"""Stream time for a partition's streams, in one place: idleness, progress markers, and
the releases they allow (as quix-streams' ``WatermarkManager`` holds watermarks).

Each partition's stream time (``streams.core.clock.StreamClock``) is the minimum of
its streams' frontiers, skipping idle streams. What moves it, besides records:

- **Idleness.** Live, an input partition is idle once it is caught up with its end
  offset and has stayed so, with no new record, for ``idle_after`` seconds
  (``Idleness``). Offline, a stream is idle once its last record is read.
- **Progress markers.** When records may reach a partition through the re-route
  topic, its stream time also waits for every other partition's streams. Each
  partition tells the others how far it has read by markers written into their
  re-route partitions (at most every ``marker_interval`` while busy, and on every
  idle check as a heartbeat). Where the target partition is owned by this worker
  too, and everything this run forwarded to it has been read back, the same
  information is handed over in memory instead (no round trip through Kafka).

Nothing here touches Kafka: the shell passes in what only Kafka knows (end offsets,
where the worker has read to) and writes the ``OutRecord``s it gets back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

import orjson

from streams.core.engine import Engine
from streams.processing.processor import Processor
from streams.processing.records import OutRecord

TP = tuple[str, int]  # (topic, partition): faust's TP is one too


class Fetches(Protocol):
    """What only the consumer knows about an input partition."""

    def highwater(self, tp: TP) -> int | None:
        """Its end offset as of the last fetch answer (None: not known yet)."""

    def fresh(self, tp: TP) -> bool:
        """Did its last fetch answer come recently (the broker answers)?"""

    def position(self, tp: TP) -> int | None:
        """The next offset to handle: past the last record handled, else where reading
        starts (None: not known yet)."""


class Idleness:
    """When a caught-up input partition counts as idle: after ``idle_after`` seconds caught
    up without a break (Kafka Streams' ``max.task.idle.ms``, Flink's ``withIdleness``). A
    producer that writes in bursts is not done just because its partition was caught up
    for a moment. Times are monotonic seconds, passed in."""

    __slots__ = ("_since", "idle_after")

    def __init__(self, idle_after: float) -> None:
        self.idle_after = idle_after
        self._since: dict[object, float] = {}

    def update(self, key: object, caught_up: bool, now: float, received: bool = False) -> bool:
        """``received``: the partition just delivered records, so its quiet time starts
        now. Without it, a consumer fast enough to end every batch at the end offset its
        fetch reported counted a partition receiving a record every few milliseconds as
        caught up without a break, and idle after ``idle_after``: stream time then passed
        records still arriving."""
        if not caught_up:
            self._since.pop(key, None)
            return False
        if received:
            self._since[key] = now
            return self.idle_after <= 0
        since = self._since.setdefault(key, now)
        return now - since >= self.idle_after

    def clear(self) -> None:
        self._since.clear()


class Answering:
    """Whether the broker answers an input partition's fetches, for the idle check: its
    last answer came within ``within`` seconds and, after a gap longer than that (an
    outage), answers have been coming again for ``grace`` seconds. Producers reconnect
    after an outage with backoff (kafka-python's grows to 30 s) and send what they
    buffered only then, each at its own moment: a partition that looks caught up right
    after the broker came back may still have records of before the outage on the way.
    Asked only of partitions read to their last known end: one with fetched records
    still to hand on is not fetched again until they are, which is back-pressure, not
    an outage. Remembered across recoveries (an outage often moves partitions too); a
    partition never answered yet is not in an outage. Times are epoch milliseconds,
    passed in."""

    __slots__ = ("_all_back_at", "_back_at", "grace_ms", "within_ms")

    def __init__(self, within: float, grace: float) -> None:
        self.within_ms = within * 1000
        self.grace_ms = grace * 1000
        # partitions in an outage (None) or in its grace since answers came back (ms)
        self._back_at: dict[object, float | None] = {}
        # every partition in the grace since then (a start that follows an outage)
        self._all_back_at: float | None = None

    def after_outage(self, now_ms: float) -> None:
        """This run started because of an outage (the worker restarted itself after a
        transaction failed with the broker away): no partition is trusted caught up
        until the grace has passed, whatever its answers say."""
        self._all_back_at = now_ms

    def fresh(self, key: object, last_answer_ms: float | None, now_ms: float) -> bool:
        if last_answer_ms is None:
            return False
        if now_ms - last_answer_ms > self.within_ms:
            self._back_at[key] = None
            return False
        if self._all_back_at is not None:
            if now_ms - self._all_back_at < self.grace_ms:
                return False
            self._all_back_at = None
        if key not in self._back_at:
            return True
        back = self._back_at[key]
        if back is None:
            back = self._back_at[key] = now_ms
        if now_ms - back < self.grace_ms:
            return False
        del self._back_at[key]
        return True

    def silent(
        self, key: object, last_answer_ms: float | None, now_ms: float, after_ms: float
    ) -> None:
        """A watch between idle checks: no answer for ``after_ms`` is an outage (the idle
        check, which waits for the broker, may not run again until it is over)."""
        if last_answer_ms is not None and now_ms - last_answer_ms > after_ms:
            self._back_at[key] = None

    def in_grace(self) -> int:
        """Partitions not trusted caught up because of an outage (for /stats)."""
        return len(self._back_at) + (self._all_back_at is not None)


class Watermarks:
    """Idleness and progress markers of the partitions one worker owns, and the
    releases of held candidates they allow."""

    def __init__(
        self,
        processor: Processor,
        partitions: int,
        idle_after: float,
        marker_interval: float,
        reroute_topic: str | None,
        inputs: Iterable[str] = (),
        marker_expiry: float = 3.0,
    ) -> None:
        self.processor = processor
        self.engine: Engine = processor.engine
        self.role_of = processor.role_of
        self.partitions = partitions
        self.marker_interval = marker_interval
        self.reroute_topic = reroute_topic
        self.inputs = tuple(inputs)  # input topic names: each partition's streams
        # A remote stream's idleness counts only while its markers keep coming (every idle
        # check sends one): one that stopped (broker gone, worker paused) is busy.
        self.marker_expiry = marker_expiry
        self._marker_seen: dict[tuple[int, int], float] = {}  # (partition, source) -> when
        processor.on_marker = self._marker_read
        # partition -> input roles a replay announced records still to come on
        # (``records.H_OPEN``): not idle, however caught up, until their last record
        self._open: dict[int, set[str]] = {}
        # (partition, replay id) -> roles whose last record of that replay was read
        self._ended: dict[tuple[int, str], set[str]] = {}
        processor.on_open = self._announced
        self._idleness = Idleness(idle_after)
        # re-route partitions seen caught up since the last recovery: whatever an earlier
        # run forwarded to them has been read, so in-process markers may be trusted there
        self.reroute_clear: set[int] = set()
        self._local_sent: dict[int, bytes] = {}
        self._marker_sent: dict[int, tuple[float, bytes]] = {}  # partition -> (when, what)
        # exactly-once: campaign counts are sent once per commit cycle (``all_campaign_counts``)
        # instead of after every batch; nothing of a transaction is read before its commit
        self.counts_at_commit = False

    def reset(self) -> None:
        """A recovery: nothing is known caught up or told to the others any more."""
        self._idleness.clear()
        self._open.clear()
        self._ended.clear()
        self._marker_seen.clear()
        self._marker_sent.clear()
        self.reroute_clear.clear()
        self._local_sent.clear()

    def drop(self, partitions: Iterable[int]) -> None:
        """Partitions moved to another worker."""
        self.reroute_clear.difference_update(partitions)

    # ------------------------------------------------------------ offline

    def ended(self, partition: int, role: str) -> None:
        """Offline: the stream has no further records (idle for good)."""
        self.engine.clock(partition).set_idle(role, True)

    # ------------------------------------------------------------ live

    def after_batch(
        self,
        last: dict[TP, int],
        fetches: Fetches,
        sources: Iterable[int],
        owned: set[int],
        wall: int,
    ) -> list[OutRecord]:
        """After a batch: idleness of every input stream of the partitions it touched
        (``last``: the last offset read of each partition in the batch; the partition's
        other streams are looked at again too, so that a stream seen caught up before
        is not taken as idle once its end moved on), their markers, what the forwarded
        records read back allow their sources to hand over in memory, and the releases
        all of that allows."""
        now = time.monotonic()
        out: list[OutRecord] = self.processor.flush_forwards()  # before any marker
        touched: dict[int, None] = {}
        for tp, offset in last.items():
            touched[tp[1]] = None
            if tp[0] == self.reroute_topic and self._caught_up(fetches, tp, offset + 1):
                # read to an end offset fetched since recovery: whatever an earlier run
                # forwarded there is read (the idle check finds this too, later)
                self.reroute_clear.add(tp[1])
        local = [p for p in touched if any(tp[1] == p and tp[0] != self.reroute_topic
                                           for tp in last)]  # fmt: skip
        for p in local:
            for topic in self.inputs:
                tp = (topic, p)
                read = last.get(tp)
                at = fetches.position(tp) if read is None else read + 1
                caught_up = at is not None and self._caught_up(fetches, tp, at)
                self._set_idle(tp, caught_up, now, received=read is not None)
        self._expire_markers(touched, now)
        for p in local:
            out += self.markers(p, now, self.marker_interval)
            out += self._local_markers(p, owned, wall)
        for src in sorted(set(sources) & owned):
            # forwarded records read back: their source's in-memory marker may apply now
            out += self._local_markers(src, owned, wall, force=True)
        for p in touched:
            out += self.processor.render(self.processor.release(p, wall))
        out += self.campaign_counts(touched, owned, wall)
        return out

    def campaign_counts(
        self, partitions: Iterable[int], owned: set[int], wall: int
    ) -> list[OutRecord]:
        """Campaign gate entries and promises of the owned partitions (``core.gate``): to
        every partition's replica, through the re-route topic, even with one partition
        (a replica's durable state and its reads commit together)."""
        if not self.engine.replicated or self.counts_at_commit:
            return []
        return self.all_campaign_counts(partitions, owned, wall)

    def all_campaign_counts(
        self, partitions: Iterable[int], owned: set[int], wall: int
    ) -> list[OutRecord]:
        """The same, whatever ``counts_at_commit`` says (a commit cycle asks for them)."""
        if not self.engine.replicated:
            return []
        out: list[OutRecord] = []
        for p in partitions:
            if p in owned:
                out += self.processor.campaign_counts(p, self.partitions, wall)
        return out

    @staticmethod
    def _caught_up(fetches: Fetches, tp: TP, at: int) -> bool:
        """Read to the end offset of an answer the broker gave recently."""
        hw = fetches.highwater(tp)
        return hw is not None and hw >= 0 and at >= hw and fetches.fresh(tp)

    def _marker_read(self, partition: int, source: int) -> None:
        self._marker_seen[(partition, source)] = time.monotonic()

    def _expire_markers(self, partitions: Iterable[int], now: float) -> None:
        """Remote streams whose markers stopped coming count as busy again."""
        if self.partitions < 2:
            return
        for p in partitions:
            clock = self.engine.clock(p)
            for src in range(self.partitions):
                if src == p:
                    continue
                seen = self._marker_seen.get((p, src))
                if seen is not None and now - seen > self.marker_expiry:
                    for role in self.processor.kinds:
                        clock.busy((role, src))
                    del self._marker_seen[(p, src)]

    def heartbeat(self, partitions: Iterable[int]) -> list[OutRecord]:
        """Markers of every partition, changed or not: a restarted peer learns where its
        sources stand without waiting for their next record."""
        now = time.monotonic()
        out: list[OutRecord] = self.processor.flush_forwards()
        for p in partitions:
            out += self.markers(p, now, 0.0, heartbeat=True)
        return out

    def unread_reroute(self, assigned: Iterable[TP]) -> set[TP]:
        """Re-route partitions not yet seen caught up since the last recovery."""
        return {tp for tp in assigned if tp[1] not in self.reroute_clear}

    def on_idle_check(
        self,
        ends: dict[TP, int],
        done: Callable[[TP], int | None],
        fresh: Callable[[TP], bool],
        inputs: Iterable[TP],
        reroute: Iterable[TP],
        owned: set[int],
        wall: int,
    ) -> list[OutRecord]:
        """The periodic check: each input partition is caught up when where it has been
        read to (``done``) reaches its end offset; then markers, in-memory hand-overs, and
        releases by wall clock where everything is quiet."""
        now = time.monotonic()
        inputs = list(inputs)
        for tp in inputs:
            end = ends.get(tp)
            if end is None or tp[1] not in owned:
                continue
            at = done(tp)
            self._set_idle(tp, at is not None and at >= end and fresh(tp), now)
        for tp in reroute:
            end = ends.get(tp)
            at = done(tp)
            if end is not None and at is not None and at >= end:
                self.reroute_clear.add(tp[1])
        out: list[OutRecord] = self.processor.flush_forwards()
        partitions = sorted({tp[1] for tp in inputs} & owned)
        self._expire_markers(partitions, now)
        for p in partitions:
            out += self.markers(p, now, 0.0)  # idleness changed: tell the others now
            out += self._local_markers(p, owned, wall, force=True)
        for p in partitions:
            out += self.processor.render(self.processor.release_idle(p, wall))
        out += self.campaign_counts(partitions, owned, wall)
        return out

    # ------------------------------------------------------------ markers

    def _announced(self, partition: int, role: str, rid: str, still: frozenset[str]) -> None:
        opened = self._open.setdefault(partition, set())
        ended = self._ended.setdefault((partition, rid), set())
        opened |= still - ended  # a stream at its end in this replay stays there
        if role not in still:  # its own last record of this replay: at its end
            ended.add(role)
            opened.discard(role)

    def _set_idle(self, tp: TP, caught_up: bool, now: float, received: bool = False) -> None:
        role = self.role_of[tp[0]]
        idle = self._idleness.update(tp, caught_up, now, received)
        if idle and role in self._open.get(tp[1], ()):
            idle = False  # a replay still has records for it
        self.engine.clock(tp[1]).set_idle(role, idle)

    def markers(
        self, partition: int, now: float, min_interval: float, heartbeat: bool = False
    ) -> list[OutRecord]:
        """Progress markers of one partition: when its frontiers or idleness changed (at
        most every ``min_interval``), and on every check as a heartbeat for restarted
        peers."""
        if self.partitions < 2:
            return []
        last = self._marker_sent.get(partition)
        if not heartbeat and last is not None and now - last[0] < min_interval:
            return []
        state = orjson.dumps([self.engine.clock(partition).local(),
                              sorted(self.engine.link_done(partition).items())])  # fmt: skip
        if not heartbeat and last is not None and last[1] == state:
            return []
        self._marker_sent[partition] = (now, state)
        return self.processor.markers(partition, self.partitions, time.time_ns())

    def _local_markers(
        self, source: int, owned: set[int], wall: int, force: bool = False
    ) -> list[OutRecord]:
        """The same progress markers, handed over in memory to the partitions this worker
        owns too, and released there: no round trip through Kafka. Only where it is as
        good as the marker in the topic: every record this run forwarded from ``source``
        to the target has been read back, and the target's re-route partition was seen
        caught up since recovery (nothing an earlier run forwarded is still unread)."""
        if self.partitions < 2 or not self.reroute_clear:
            return []
        local = self.engine.clock(source).local()
        done = self.engine.link_done(source)
        snapshot = orjson.dumps([local, sorted(done.items())])
        if not force and self._local_sent.get(source) == snapshot:
            return []
        self._local_sent[source] = snapshot
        out: list[OutRecord] = []
        stamp = time.time_ns()  # one snapshot of the source for every target
        engine = self.engine
        linked = engine.acked_links
        if linked:
            engine.note_marker(source, source, stamp, local)
            echo = engine.marker_echo(source)
        for target in self.reroute_clear:
            if target == source or target not in owned:
                continue
            if not self.processor.settled(source, target):
                continue
            clock = self.engine.clock(target)
            for role, (frontier, idle) in local.items():
                clock.set_remote((role, source), frontier, idle, stamp)
            if done:
                self.engine.hear_acks(target, source, done)
            if linked:
                engine.note_marker(target, source, stamp, local)
                engine.hear_echo(target, source, echo)
            self._marker_seen[(target, source)] = time.monotonic()
            out += self.processor.render(self.processor.release(target, wall))
        return out
