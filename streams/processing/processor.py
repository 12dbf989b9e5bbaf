"""One processor for the worker and the offline replay: decode, route, ingest, release,
render. No Kafka, no asyncio, no wall clock of its own (times are passed in).

Both drivers go through the same steps, so they decide alike by construction:

- ``read``: bytes of an input record -> the core's record, or why it is unreadable
  (``streams.contract.decode``), with the policy's clock-skew check;
- ``apply``: a readable record on its customer's partition -> the engine;
- ``release`` / ``release_idle`` / ``flush``: what stream time (or, live, the wall
  clock on a quiet partition) allows.

The worker enters through ``on_record``: the raw consumer record, which adds the
routing the offline replay never needs (its records are placed on their customer's
partition by construction): a record found on the wrong partition is forwarded, and
records of the internal re-route topic (forwarded records and progress markers) are
taken apart. It gets ``OutRecord``s back, rendered (``render``) and counted.

Re-routing. A producer that does not partition by ``murmur2(customer_id)`` (every
librdkafka client by default) puts records where another worker's state is. Such a
record is forwarded to its right partition through the app's own re-route topic
(co-partitioned with the inputs, never the input topic itself: other consumers of
``purchases`` must not see a purchase twice), with headers naming its role, its
source coordinates and the frontier of its source stream when it was read. Each
partition also writes *progress markers* into every other partition of the re-route
topic (``streams.processing.watermarks``): "my stream of topic T has reached frontier
F, and everything of it I had to forward to you is before this marker". A
partition's stream time waits for those markers, so it never passes an event still
on its way to it, and a forwarded record is decided exactly as if it had been
produced right.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping

import orjson

from streams.contract import decode, render
from streams.contract.partitioning import partition_for
from streams.core.engine import Engine
from streams.core.gate import UNHEARD, Count
from streams.core.identity import Link
from streams.core.outcomes import Decided, Failed, LateFinding, Output, Refused
from streams.processing.records import (
    H_ARRIVAL,
    H_COUNTS,
    H_INCARNATION,
    H_MARKER,
    H_OPEN,
    H_ROLE,
    H_SOURCE,
    OutRecord,
    parse_open,
)

log = logging.getLogger("trigger_sanity.worker")

MISROUTE_WARN_EVERY_MS = 60_000
COUNTS_BYTES = 200_000  # campaign gate entries in one re-route record, at most about
FORWARD_BATCH = 500  # links or copied facts in one re-route record, at most


class GateFailed(RuntimeError):
    """A campaign gate replica failed part-way through entries: not one record's fault,
    and not undone by a rollback. The worker stops; the restart reads its changelog."""


class Processor:
    def __init__(
        self,
        engine: Engine,
        role_of: dict[str, str],
        partitions_of: Callable[[str], int],
        max_record_bytes: int = decode.DEFAULT_MAX_RECORD_BYTES,
        reroute_topic: str | None = None,
    ) -> None:
        self.engine = engine
        self.policy = engine.policy
        self.role_of = role_of
        self.partitions_of = partitions_of
        self.max_record_bytes = max_record_bytes
        self.reroute_topic = reroute_topic
        self.outbound_topic = next((t for t, r in role_of.items() if r == "outbound"), "outbound")
        self.counts: Counter[str] = Counter()
        self.misrouted: Counter[str] = Counter()  # per input topic
        self._warned: dict[str, int] = {}
        # This process's run: records it forwarded carry it, so that once it has read back
        # all it forwarded from S to P, P may take S's frontier from memory (watermarks).
        self.incarnation = b""
        self.forwarded: Counter[tuple[int, int]] = Counter()  # (source, target) partition
        self.read_back: Counter[tuple[int, int]] = Counter()
        self.on_decided: Callable[[Decided], None] | None = None  # metrics: latency
        # a progress marker of ``source`` was applied on ``partition`` (watermarks: when)
        self.on_marker: Callable[[int, int], None] | None = None
        # a record of replay ``rid`` on ``partition`` of ``role`` named these roles open
        self.on_open: Callable[[int, str, str, frozenset[str]], None] | None = None
        self.kinds = tuple(dict.fromkeys(r for r in role_of.values() if r in decode.MODELS))
        # links and copies for other partitions, by (source, target, what): ``_keep_forwards``
        self._pending: dict[tuple[int, int, str], list[list[object]]] = {}
        # live, a deadline waits until every partition has heard the links it sees
        engine.acked_links = reroute_topic is not None and engine.partitions > 1

    # ------------------------------------------------------------ the shared steps

    def read(
        self, role: str, value: bytes | None, record_ms: int, wall_ms: int
    ) -> decode.Parsed | decode.Unreadable:
        """Decode one input value (of topic role ``role``) once."""
        return decode.decode(role, value, record_ms, wall_ms, self.policy, self.max_record_bytes)

    def apply(
        self,
        partition: int,
        parsed: decode.Parsed,
        record_ms: int,
        source: tuple[str, int] | None = None,
        arrival: int | None = None,
    ) -> list[Output]:
        """A readable record on its customer's partition, read directly or re-routed.
        ``source`` (stream, offset) lets the engine skip a record read again after a
        crash; ``arrival``: a forwarded record's frontier where it was first read."""
        self.counts[parsed.kind] += 1
        out = self.engine.ingest(
            partition, parsed.kind, parsed.customer_id, parsed.event_ms, parsed.fact,
            record_ms, source, arrival,
        )  # fmt: skip
        if self.engine.forwards:
            if self.reroute_topic is None:
                out += self._forward_here()
            else:
                self._keep_forwards(partition)
        return out

    def _forward_here(self) -> list[Output]:
        """Offline: what the engine sends to other partitions arrives at once."""
        engine = self.engine
        fw = engine.forwards
        out: list[Output] = []
        while fw:
            batch = list(fw)
            fw.clear()
            for what, target, item in batch:
                if what == "copy":
                    out += engine.take_copy(target, item[0], item[1])
                else:
                    link, source, n = item
                    engine.hear_link(target, link, source, n)
        return out

    def _keep_forwards(self, source: int) -> None:
        """Live: the engine's broadcasts of links and copies of linked customers' facts,
        kept until ``flush_forwards`` sends them, a record per target partition (a backlog
        reads links by the hundred): that is before this partition's next markers, which
        tell the others it has sent them."""
        fw = self.engine.forwards
        for what, target, item in fw:
            if what == "copy":
                origin, row = item
                self._pending.setdefault((source, target, "copy"), []).append([origin, row])
            else:
                link, src, n = item
                self._pending.setdefault((src, target, "link"), []).append([link.row(), n])
        fw.clear()

    def flush_forwards(self) -> list[OutRecord]:
        """What ``_keep_forwards`` kept, as records of the re-route topic (counted: in-memory
        markers wait until they are read back). Called before any marker is written."""
        if not self._pending:
            return []
        out: list[OutRecord] = []
        inc = (H_INCARNATION, self.incarnation)
        for (source, target, what), items in self._pending.items():
            for i in range(0, len(items), FORWARD_BATCH):
                piece = items[i : i + FORWARD_BATCH]
                hdr = ((H_ROLE, what.encode()), (H_SOURCE, f"{what}:{source}:0".encode()),
                       (H_ARRIVAL, b"0"), inc)  # fmt: skip
                out.append(OutRecord("reroute", None, orjson.dumps(piece), target, None, hdr,
                                     source))  # fmt: skip
                self.forwarded[(source, target)] += 1
        self._pending.clear()
        self.counts["link_forwards"] += len(out)
        return out

    def release(self, partition: int, wall_ms: int) -> list[Output]:
        return self.engine.release(partition, wall_ms)

    def release_idle(self, partition: int, wall_ms: int) -> list[Output]:
        return self.engine.release_idle(partition, wall_ms)

    def flush(self, wall_ms: int) -> list[Output]:
        """End of input (offline): decide everything still held."""
        return self.engine.flush(wall_ms)

    # ------------------------------------------------------------ the worker's entry

    def on_record(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        key: bytes | None,
        value: bytes | None,
        wall_ms: int,
        headers: Mapping[str, bytes] | None = None,
    ) -> list[OutRecord]:
        """One consumed record -> the records to write, rendered."""
        if topic == self.reroute_topic:
            return self._on_rerouted(
                partition, offset, record_ms, key, value, wall_ms, headers or {}
            )
        role = self.role_of[topic]
        if headers and self.on_open is not None:
            announced = headers.get(H_OPEN)
            if announced is not None:
                rid, roles = parse_open(announced)
                self.on_open(partition, role, rid, roles & set(self.kinds))
        parsed = self.read(role, value, record_ms, wall_ms)
        if isinstance(parsed, decode.Unreadable):
            return [self.dead_letter(topic, partition, offset, key, value, parsed.error, wall_ms)]
        expected = partition_for(parsed.customer_id, self.partitions_of(topic))
        if partition != expected and self.reroute_topic is not None:
            return [self._forward(topic, partition, offset, record_ms, role, parsed, value,
                                  expected, wall_ms)]  # fmt: skip
        if key != parsed.customer_id.encode("utf-8"):
            # Right partition, other key (or none): its customer's state is here already.
            self.counts["rekeyed"] += 1
        source = (f"{topic}:{partition}", offset)
        return self.render(self.apply(partition, parsed, record_ms, source))

    def _forward(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        role: str,
        parsed: decode.Parsed,
        value: bytes | None,
        expected: int,
        wall_ms: int,
    ) -> OutRecord:
        """Send a misrouted record to its partition; it still moves this stream's frontier."""
        clock = self.engine.clock(partition)
        arr = clock.frontier(role)
        clock.observe(role, parsed.event_ms)
        if isinstance(parsed.fact, Link):  # a link read here is also broadcast from here
            self.engine.relay_link(partition, parsed.fact, arr)
            self._keep_forwards(partition)
        self.counts["rerouted"] += 1
        self.misrouted[topic] += 1
        self.forwarded[(partition, expected)] += 1
        last = self._warned.get(topic)
        if last is None or wall_ms - last >= MISROUTE_WARN_EVERY_MS:
            self._warned[topic] = wall_ms
            log.warning(
                "%s: %d record(s) so far on the wrong partition (e.g. %s[%d]@%d for customer "
                "%s belongs to partition %d); re-routing them costs a round trip: set the "
                "producer's partitioner to murmur2 (librdkafka: partitioner=murmur2_random)",
                topic, self.misrouted[topic], topic, partition, offset, parsed.customer_id,
                expected,
            )  # fmt: skip
        return OutRecord(
            "reroute",
            parsed.customer_id.encode("utf-8"),
            value,
            expected,
            record_ms,
            (
                (H_ROLE, role.encode()),
                (H_SOURCE, f"{topic}:{partition}:{offset}".encode()),
                (H_ARRIVAL, str(arr).encode()),
                (H_INCARNATION, self.incarnation),
            ),
            partition,
        )

    def _on_rerouted(
        self,
        partition: int,
        offset: int,
        record_ms: int,
        key: bytes | None,
        value: bytes | None,
        wall_ms: int,
        headers: Mapping[str, bytes],
    ) -> list[OutRecord]:
        topic = self.reroute_topic or ""
        if H_MARKER in headers:
            self._on_marker(partition, value)
            return []
        if H_COUNTS in headers:
            return self.render(self._on_counts(partition, value, wall_ms))
        try:
            role = headers[H_ROLE].decode()
            src_topic, src_part, src_off = headers[H_SOURCE].decode().rsplit(":", 2)
            arrival = int(headers[H_ARRIVAL])
            source = (f"{src_topic}:{int(src_part)}", int(src_off))
            if self.incarnation and headers.get(H_INCARNATION) == self.incarnation:
                self.read_back[(int(src_part), partition)] += 1
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            err = f"re-route record without valid {H_ROLE}/{H_SOURCE}/{H_ARRIVAL} headers: {exc!r}"
            return [self.dead_letter(topic, partition, offset, key, value, err, wall_ms)]
        if role in ("link", "copy"):
            return self._on_linked(partition, offset, role, key, value, source, wall_ms)
        if role not in decode.MODELS:
            err = f"re-route record of unknown role {role!r}"
            return [self.dead_letter(topic, partition, offset, key, value, err, wall_ms)]
        self.engine.clock(partition).busy((role, int(src_part)))
        parsed = self.read(role, value, record_ms, wall_ms)
        if isinstance(parsed, decode.Unreadable):
            src_t, src_p = source[0].rsplit(":", 1)
            return [self.dead_letter(src_t, int(src_p), source[1], key, value, parsed.error,
                                     wall_ms, origin=partition)]  # fmt: skip
        return self.render(self.apply(partition, parsed, record_ms, source, arrival))

    def _on_linked(
        self,
        partition: int,
        offset: int,
        role: str,
        key: bytes | None,
        value: bytes | None,
        source: tuple[str, int],
        wall_ms: int,
    ) -> list[OutRecord]:
        """A link another partition read (broadcast), or a copy of a linked customer's fact."""
        try:
            items = orjson.loads(value or b"")
            late: list[Output] = []
            if role == "link":
                src = int(source[0].rpartition(":")[2])
                for row, n in items:
                    self.engine.hear_link(partition, Link.from_row(row), src, int(n))
            else:
                for origin, row in items:
                    late += self.engine.take_copy(partition, str(origin), row)
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError, ValueError) as exc:
            err = f"re-route {role} record that cannot be read: {exc!r}"
            return [self.dead_letter(self.reroute_topic or "", partition, offset, key, value,
                                     err, wall_ms)]  # fmt: skip
        self.counts[f"link_{role}_in"] += 1
        self._keep_forwards(partition)
        return self.render(late)

    def _on_marker(self, partition: int, value: bytes | None) -> None:
        try:
            m = orjson.loads(value or b"")
            src = int(m["src"])
            streams = m["f"]
            stamp = int(m.get("at", 0))
            remote = [(role, fr, bool(idle)) for role, (fr, idle) in streams.items()]
            done = {int(s): int(n) for s, n in m.get("d", {}).items()}
            echo = {int(s): int(n) for s, n in m.get("e", {}).items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring a malformed progress marker on partition %d: %r", partition, exc)
            self.counts["bad_marker"] += 1
            return
        clock = self.engine.clock(partition)
        for role, frontier, idle in remote:
            clock.set_remote((role, src), frontier, idle, stamp)
        if done:
            self.engine.hear_acks(partition, src, done)
        if self.engine.acked_links:
            self.engine.note_marker(partition, src, stamp, {r: (f, i) for r, f, i in remote})
            self.engine.hear_echo(partition, src, echo)
        self.counts["markers"] += 1
        if self.on_marker is not None:
            self.on_marker(partition, src)

    def _on_counts(self, partition: int, value: bytes | None, wall_ms: int) -> list[Output]:
        """A partition's campaign gate entries reached this partition's replica."""
        try:
            m = orjson.loads(value or b"")
            src, promise = int(m["src"]), int(m["t"])
            counts = [
                (int(at), str(mid), int(seq), str(cid), str(c), int(created), str(fp))
                for at, mid, seq, cid, c, created, fp in m["c"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("ignoring malformed campaign counts on partition %d: %r", partition, exc)
            self.counts["bad_counts"] += 1
            return []
        try:
            return self.engine.incoming(partition, src, counts, promise, wall_ms)
        except Exception as exc:
            # The replica changed in memory and cannot be undone like the store: stop
            # rather than go on with a replica that disagrees with the others.
            raise GateFailed(f"campaign gate of partition {partition}: {exc!r}") from exc

    def campaign_counts(self, source: int, partitions: int, wall_ms: int) -> list[OutRecord]:
        """A partition's new campaign gate entries and promise, for every replica (its own
        included: each replica takes every source's entries in the same way)."""
        if self.reroute_topic is None:
            return []
        told = self.engine.outgoing(source, wall_ms)
        if told is None:
            return []
        counts, promise = told
        hdr = ((H_COUNTS, b"1"),)
        out: list[OutRecord] = []
        # a partition that caught up on a long backlog can send tens of thousands at once:
        # in records well under the broker's limit, the promise with the last
        pieces: list[list[Count]] = [[]]
        size = 0
        for c in counts:
            n = 48 + len(c[1]) + len(c[3]) + len(c[4]) + len(c[6])  # its JSON, about
            if size + n > COUNTS_BYTES and pieces[-1]:
                pieces.append([])
                size = 0
            pieces[-1].append(c)
            size += n
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            value = orjson.dumps({"src": source, "t": promise if last else UNHEARD, "c": piece})
            out += [OutRecord("reroute", None, value, p, None, hdr, source)
                    for p in range(partitions)]  # fmt: skip
        return out

    # ------------------------------------------------------------ forwarding bookkeeping

    def new_incarnation(self, tag: bytes) -> None:
        self.incarnation = tag
        self.forwarded.clear()
        self.read_back.clear()

    def settled(self, source: int, target: int) -> bool:
        """Has everything this run forwarded from ``source`` to ``target`` been read back?"""
        return self.forwarded[(source, target)] == self.read_back[(source, target)]

    def markers(self, source: int, partitions: int, stamp: int) -> list[OutRecord]:
        """Progress markers of partition ``source`` for every other partition; ``stamp``
        orders them (and the in-memory hand-overs) by when they were taken."""
        if self.reroute_topic is None or partitions < 2:
            return []
        local = self.engine.clock(source).local()
        f = {r: [fr, i] for r, (fr, i) in local.items()}
        engine = self.engine
        done = {str(s): n for s, n in engine.link_done(source).items()}
        echo = {str(s): n for s, n in engine.marker_echo(source).items()}
        value = orjson.dumps({"src": source, "at": stamp, "f": f, "d": done, "e": echo})
        if engine.acked_links:
            engine.note_marker(source, source, stamp, local)
        hdr = ((H_MARKER, b"1"),)
        return [
            OutRecord("reroute", None, value, p, None, hdr, source)
            for p in range(partitions)
            if p != source
        ]

    # ------------------------------------------------------------ outputs

    def dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        wall_ms: int,
        origin: int | None = None,
    ) -> OutRecord:
        """``origin``: the partition read when it is not ``partition`` (a forwarded
        record is dead-lettered with where it was first read)."""
        self.counts["dead_letter"] += 1
        log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, error)
        return OutRecord(
            "dead_letter",
            key,
            render.dead_letter(topic, partition, offset, key, value, error, wall_ms),
            origin=partition if origin is None else origin,
        )

    def render_one(self, o: Output) -> tuple[tuple[str, bytes, bytes], ...]:
        """One decision or finding as the records to write: (role, key, value)."""
        return render.records(o, self.outbound_topic)

    def render(self, outputs: list[Output]) -> list[OutRecord]:
        """Outputs as records to write, counted; those the engine rendered into the
        outbox already are taken as they are (a re-publish is byte-identical)."""
        out: list[OutRecord] = []
        for o in outputs:
            if isinstance(o, Decided):
                self.counts[o.decision.action] += 1
                if self.on_decided is not None:
                    self.on_decided(o)
            elif isinstance(o, LateFinding):
                self.counts["late_evidence"] += 1
            elif isinstance(o, Refused):
                self.counts["dead_letter"] += 1
                self.counts["links_refused"] += 1
                log.warning("identity link refused (dead-letter): %s", o.error)
            else:
                self._failed(o)
            for role, key, value in o.rendered or self.render_one(o):
                out.append(OutRecord(role, key, value))
        return out

    def _failed(self, o: Failed) -> None:
        self.counts["dead_letter"] += 1
        log.error("%s", o.error)
