"""The faust-streaming shell: bytes, state and time in; decisions out.

No rule logic lives here. faust's consumer reads the five input topics (and
the re-route topic) and its drain loop hands each fetched batch to one
coroutine (``streams.consumer``: no faust agent, no per-record event), which
hands each record in turn to the ``Router`` (decode once, dead-letter,
re-route, engine, render); one batch at a time, so nothing is committed past
a record in flight. This
module writes what it returns and tracks what only Kafka knows: offsets,
end offsets, partition assignment. Customer state, including
held candidates, lives in a changelogged table, so a held message survives
a crash and is decided after restart.

Stream time needs to know when an input topic-partition is *idle* (caught
up). After each record that is ``offset + 1 >= highwater``; a timer also
compares the end offsets with what was processed (or, for a partition not
read since start, with the committed offset: fetched-but-unprocessed
records must never look idle). The same timer releases held candidates by
wall clock on partitions where everything is idle.

Per-record failures never stop the worker: unreadable input is a
dead-letter by construction, and any other exception while handling a
record is logged with topic/partition/offset and routed to the dead-letter
topic too.

Offsets are not faust's business here: the input topics are subscribed with
acks off and the worker commits itself, through ``streams.checkpoint``, an
offset only once every write its record caused is acknowledged, with the
stream's frontier in the commit metadata (see that module for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import KafkaError as ClientError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as ClientTP
from faust.types import TP
from kafka.errors import KafkaError

from streams.contract.partitioning import partition_for
from streams.core.clock import NEVER, Idleness, iso
from streams.core.engine import Decided, Engine
from streams.core.misfire import MisfireDetector
from streams.core.policy import Policy
from streams.core.state import CustomerState, decode, encode, pending_of
from streams.kafka.admin import admin_client
from streams.kafka.batch_consumer import BatchConsumer, BatchSink, BatchTransport, FetchTuning
from streams.processing.processor import H_SOURCE, OutRecord, Router
from streams.settings import Settings
from streams.worker.changelog import BulkLoadedStore
from streams.worker.checkpoint import Checkpoints, WriteFailed, frontier_meta, parse_frontier
from streams.worker.dashboard import PAGE as DASHBOARD
from streams.worker.dashboard import data as dashboard_data_of
from streams.worker.loop import STEP_BUDGET, give_way
from streams.worker.metrics import Snapshot, WorkerMetrics
from streams.worker.policy_feed import PolicyFeed
from streams.worker.recent import RecentDecisions
from streams.worker.snapshot import COPY_STEP, LocalSnapshot
from streams.worker.state_report import report

log = logging.getLogger("trigger_sanity.worker")

PUBLISHED = frozenset({"send_queue", "suppressed", "late_evidence"})
"""Output roles that wait in the outbox until the state recording them is durable."""


def app_config(settings: Settings) -> dict[str, Any]:
    """The one mapping from our settings onto faust's App configuration."""
    conf: dict[str, Any] = {
        "broker": [f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(",")],
        # always faust's memory store underneath: rocksdb:// adds our local copy of the
        # changelog to it (DurableTable), it is not faust's rocksdb driver
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "web_enabled": settings.web_enabled,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        # faust listens on web_bind (default 0.0.0.0); the stats page names customers.
        "web_bind": settings.web_host,
        "broker_commit_interval": settings.commit_interval,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout / 3),
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        # On stop or rebalance, do not wait for records the worker has been handed but not
        # processed: once stopping, it leaves them unacknowledged (read again after the
        # restart) rather than write state into tables that are being revoked.
        "stream_wait_empty": False,
        "table_standby_replicas": 0,
        "producer_acks": -1,
        # Decisions, changelog write-backs and markers go out in bursts: batch them.
        "producer_linger": settings.linger_ms / 1000,
        "producer_max_batch_size": 512 * 1024,
        # what one fetch hands the worker (streams.consumer): one batch
        "broker_max_poll_records": settings.batch_size,
    }
    if settings.sasl_mechanism:
        conf["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
        )
    return conf


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _App(faust.App):
    """faust's App with two additions for stopping: work to finish before the consumer
    stops (the last decisions out, their delivery recorded) while tables can still be
    written; and a deadline for the whole stop. With the broker gone, faust's producer
    flush waits for ever, and a stopping worker must be gone within the session timeout
    (its partitions are someone else's by then). Leaving early is safe: nothing is
    committed before the writes it depends on, so it is a crash that loses nothing."""

    before_stop: Callable[[], Awaitable[None]] | None = None
    stop_within: float | None = None
    # started with the app, before its tables recover: faust starts ``app.task``s only
    # once recovery is done, and the stall probe must see the load and the restore too.
    # On every start (a service restart cancels its futures in stop), not only the first.
    early_tasks: tuple[Callable[[], Awaitable[None]], ...] = ()
    # where the drain loop hands fetched batches of the worker's topics (streams.consumer)
    batch_sink: BatchSink | None = None
    # fetch.min.bytes / fetch.max.wait.ms of the worker's consumer (streams.consumer)
    fetch_tuning: FetchTuning | None = None

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.early_tasks:
            self.add_future(task())

    async def on_stop(self) -> None:
        if self.stop_within is not None:
            watchdog = threading.Timer(self.stop_within, _stop_overdue, (self.stop_within,))
            watchdog.daemon = True
            watchdog.start()
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()


def _stop_overdue(seconds: float) -> None:
    log.error(
        "stopping took more than %.1f s (broker unreachable?); exiting now. Nothing is lost: "
        "what was not published or committed is done after the restart",
        seconds,
    )
    logging.shutdown()
    os._exit(1)


class DurableTable(faust.Table):
    """faust's Table, with every changelog write handed to the checkpoint ledger: an
    input offset is committed only once the state its record wrote is acknowledged."""

    checkpoints: Checkpoints | None = None
    client_kwargs: dict[str, Any] | None = None  # for the bulk-loading memory store
    # makes the rocksdb:// local copy for a changelog topic and partition count
    snapshot_factory: Callable[[str, int], LocalSnapshot] | None = None

    def _new_store_by_url(self, url: Any) -> Any:
        """The memory store loads its changelog in bulk (see streams.changelog)."""
        if self.client_kwargs is None or not str(url).startswith("memory:"):
            return super()._new_store_by_url(url)
        store = BulkLoadedStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
        store.client_kwargs = self.client_kwargs
        store.partitions = self.partitions or 1
        if self.snapshot_factory is not None:
            store.snapshot = self.snapshot_factory(
                self.changelog_topic.get_topic_name(), self.partitions or 1
            )
        return store

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if self.checkpoints is not None:
            self.checkpoints.track(fut)
        snapshot: LocalSnapshot | None = getattr(self.data, "snapshot", None)
        if snapshot is not None:  # the rocksdb:// copy must hold every changelog record
            # eager partitioning (faust's send_changelog): the partition is known now
            snapshot.on_sent(key, value, fut, fut.message.partition)
        return fut


DELIVERED_PREFIX = "\x00delivered-"
DELIVERED_PREFIX_BYTES = DELIVERED_PREFIX.encode()
METRICS_TYPE = "text/plain; version=0.0.4"
"""The Prometheus text format (charset utf-8, aiohttp's default for text)."""

POLICY_WAIT = 30.0
"""Seconds recovery waits for the policy topic to be read once before deciding."""


def delivered_key(partition: int, partitions: int) -> str:
    """A table key that lands in ``partition`` (murmur2, like the customers), under which
    the newest publish generation known delivered for that partition is kept."""
    i = 0
    while partition_for(f"{DELIVERED_PREFIX}{i}", partitions) != partition:
        i += 1
    return f"{DELIVERED_PREFIX}{i}"


class TableStore:
    """The engine's ``StateStore`` over a faust table of raw bytes, written back.

    Keys are customer ids as UTF-8 and values ``state.encode`` bytes: the
    changelog then partitions exactly like the inputs (murmur2 of the key),
    and the in-memory store holds the compact encoding, not Python objects.

    A record's changes go to the table's store at once (reads see them) and to
    the changelog at the next ``take_dirty`` flush, once per customer however
    many records touched it (as Kafka Streams' caching store and quix-streams'
    checkpoints do): faust's one changelog send per table write was most of the
    worker's cost. Offsets wait for the flush (``Checkpoints.state_pending``).
    """

    def __init__(
        self,
        table: Any,
        owns: Callable[[str], bool],
        checkpoints: Checkpoints,
        cache_size: int = 20_000,
    ) -> None:
        self.table = table
        self.owns = owns
        self.checkpoints = checkpoints
        # customer -> state (None: deleted) written since begin(): a record's changes
        # reach the table only if all of its handling succeeded, encoded once at commit
        self._tx: dict[bytes, CustomerState | None] | None = None
        # customer -> state read during the record: decoded (or taken from the cache) once
        self._seen: dict[bytes, CustomerState] = {}
        # changed since the last flush, not yet sent to the changelog
        self._dirty: dict[bytes, bytes | None] = {}
        # Decoded states of recently used customers, each exactly what its table bytes
        # say (the object committed with them): a busy customer is not decoded again on
        # every record. An object a record read but did not commit, or that a failed
        # record touched, may differ from its bytes and leaves the cache.
        self._cache: dict[bytes, CustomerState] = {}
        self._cache_size = cache_size
        self._snapshot: list[bytes] | None = None

    def begin(self) -> None:
        self._tx = {}
        self._seen = {}

    def commit(self) -> None:
        tx, self._tx = self._tx or {}, None
        seen, self._seen = self._seen, {}
        cache = self._cache
        for key in seen.keys() - tx.keys():
            cache.pop(key, None)  # read, maybe changed in place, not written: not trusted
        for key, state in tx.items():
            if state is None:
                cache.pop(key, None)
                self._set(key, None)
            else:
                self._set(key, encode(state))
                if self._cache_size:
                    cache.pop(key, None)  # most recently used last
                    cache[key] = state
        if len(cache) > self._cache_size:
            for key in list(cache)[: len(cache) - self._cache_size]:
                del cache[key]

    def rollback(self) -> None:
        for key in (*self._seen, *(self._tx or ())):
            self._cache.pop(key, None)
        self._tx = None
        self._seen = {}

    def clear_cache(self) -> None:
        """Partitions moved or state was recovered: the table is the truth again."""
        self._cache.clear()

    def _set(self, key: bytes, value: bytes | None) -> None:
        data = self.table.data
        if value is not None:
            data[key] = value
        elif key in data:
            del data[key]
        self.checkpoints.state_pending()
        self._dirty[key] = value

    def take_dirty(self) -> dict[bytes, bytes | None]:
        """What the next flush writes; from now on changes wait for the flush after."""
        dirty, self._dirty = self._dirty, {}
        return dirty

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    def get(self, customer_id: str) -> CustomerState | None:
        key = customer_id.encode("utf-8")
        tx = self._tx
        if tx is None:
            # outside a record (sweep, restore): a fresh copy, the cache stays untouched
            data = self.table.data.get(key)
            return None if data is None else decode(data)
        if key in tx:
            return tx[key]
        seen = self._seen.get(key)
        if seen is None:
            seen = self._cache.get(key)
            if seen is None:
                data = self.table.data.get(key)
                if data is None:
                    return None
                seen = decode(data)
            self._seen[key] = seen
        return seen

    def put(self, customer_id: str, state: CustomerState) -> None:
        key = customer_id.encode("utf-8")
        if self._tx is not None:
            self._tx[key] = state
        else:
            self._cache.pop(key, None)
            self._set(key, encode(state))

    def delete(self, customer_id: str) -> None:
        key = customer_id.encode("utf-8")
        if self._tx is not None:
            self._tx[key] = None
        else:
            self._cache.pop(key, None)
            self._set(key, None)

    def snapshot_keys(self) -> None:
        """Take the key list the next ``keys()`` or ``pending()`` walks, now: a million
        keys take ~20 ms to copy, which a caller stepping under a time budget wants as
        a step of its own (and out of the collector's way, see ``Worker._frozen``)."""
        self._snapshot = self._key_snapshot()

    def drop_snapshot(self) -> None:
        self._snapshot = None

    def _key_snapshot(self) -> list[bytes]:
        """Every key now, taken at once (the table changes while a sweep walks it). From
        the memory store's dict directly: through faust's mapping a million keys took
        most of a second, in one piece."""
        taken, self._snapshot = self._snapshot, None
        if taken is not None:
            return taken
        data = self.table.data
        raw = getattr(data, "data", None)
        return list(raw if isinstance(raw, dict) else data.keys())

    def pending(self) -> Iterator[tuple[str, list[tuple[int, str, int]], list[Any]]]:
        """Held candidates and outbox of each owned customer, read from the encoded
        states without decoding them whole (what ``Engine.restoring`` needs)."""
        data = self.table.data
        for key in self._key_snapshot():
            if key.startswith(DELIVERED_PREFIX_BYTES):
                continue
            cid = key.decode("utf-8")
            raw = data.get(key)
            if raw is None or not self.owns(cid):
                continue
            held, outbox = pending_of(raw)
            yield cid, held, outbox

    def keys(self) -> Iterable[str]:
        """Customers of the partitions this worker owns now. The memory store keeps keys
        written live after their partition moved to another worker; touching those
        would write stale state into a changelog partition someone else owns."""
        for raw in self._key_snapshot():
            if raw.startswith(DELIVERED_PREFIX_BYTES):
                continue
            key = raw.decode("utf-8")
            if self.owns(key):  # asked when visited: ownership may change during a sweep
                yield key


class Worker:
    """Wires one Engine into a faust App: topics, table, the batch handler, timers."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.topics = settings.topics
        self.role_of = self.topics.role_of()
        self._inputs = frozenset(self.topics.inputs)
        self.app = _App(settings.app_id, **app_config(settings))
        self.app.before_stop = self._final_publish
        self.app.stop_within = settings.session_timeout * 0.8
        self.app.fetch_tuning = FetchTuning(settings.fetch_min_bytes, settings.fetch_max_wait_ms)
        self.app.early_tasks = (self._watch_loop,)
        self.checkpoints = Checkpoints()
        table = DurableTable(
            self.app,
            name="customers",
            beacon=self.app.tables.beacon,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            # Timers write too (wall-clock releases): route changelog writes by key
            # hash, which is the same murmur2 partition as the input records.
            use_partitioner=True,
        )
        table.checkpoints = self.checkpoints
        table.client_kwargs = settings.kafka_client_kwargs()
        if settings.keeps_local_copy:
            table.snapshot_factory = lambda topic, partitions: LocalSnapshot(
                settings.data_dir / "state" / f"{topic}.rocksdb",
                topic,
                partitions,
                settings.snapshot_max_age,
            )
        self.app.tables.add(table)
        self.table = table
        self._changelog = table.changelog_topic.get_topic_name()
        self._owned: set[int] = set()
        self._generation = 0  # bumped on every revocation and recovery
        self.store = TableStore(
            self.table,
            lambda cid: self._partition_of(cid) in self._owned,
            self.checkpoints,
            settings.state_cache,
        )
        self.engine = Engine(
            policy,
            self.store,
            partitions=settings.partitions,
            rerouted=True,
        )
        self.reroute = settings.reroute_topic
        self.router = Router(
            self.engine,
            self.role_of,
            self._partitions_of,
            settings.max_record_bytes,
            reroute_topic=self.reroute,
        )
        self.engine.render = self.router.render_one
        # decisions whose state is written but maybe not yet durable: published by _publish
        self._pending: list[OutRecord] = []
        self._delivered_keys = [
            delivered_key(p, settings.partitions).encode() for p in range(settings.partitions)
        ]
        self.inputs = self.app.topic(
            *self.topics.inputs,
            self.reroute,
            key_serializer="raw",
            value_serializer="raw",
            acks=False,  # offsets are committed by _commit, never by faust
        )
        # Output topic names: records go straight to the producer (bytes already
        # rendered), not through faust's Topic.send and its per-record bookkeeping.
        self.out = {
            role: self.topics[role]
            for role in ("send_queue", "suppressed", "dead_letter", "late_evidence")
        }
        self.out["reroute"] = self.reroute
        self._idleness = Idleness(settings.idle_after)
        self._stopping = asyncio.Event()  # set when the app starts to stop
        self._handling = asyncio.Lock()  # held while a batch of records is handled
        self._publishing = asyncio.Lock()  # one publish cycle at a time
        self._publish_due = asyncio.Event()  # decisions were queued: a cycle may start
        self._flushing = asyncio.Lock()  # one write-back flush at a time
        self._copying: asyncio.Future[None] | None = None  # into the rocksdb:// local copy
        self._never = asyncio.Event()  # never set: what must not go on waits to be cancelled
        self._halted = False  # a write failed: no record is handled any more
        # re-route partitions seen caught up since the last recovery: whatever an earlier run
        # forwarded to them has been read, so in-process markers may be trusted there
        self._reroute_clear: set[int] = set()
        self._local_sent: dict[int, bytes] = {}
        self._marker_sent: dict[int, tuple[float, bytes]] = {}  # partition -> (when, what)
        self._next_offset: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self._ready = False
        self._admin: Any = None
        # what the worker is doing, for the stall probe: starting, restoring, running, sweeping
        self._phase = "starting"
        self.loop_stats: dict[str, float] = {}

        # No faust agent: the drain loop hands fetched batches straight to _on_batch
        # (streams.consumer); subscribing the topic is all the conductor is for here.
        self.app.topics.add(self.inputs)
        self.app.batch_sink = BatchSink(frozenset(self.inputs.topics), self._on_batch)
        self.app.timer(settings.idle_check_interval, name="idle-check")(self._tick)
        self.app.task(self._publisher)
        self.app.task(self._committer)
        self.app.task(self._sweeper)
        self.policy_feed = PolicyFeed(
            settings.topics["policy"],
            self.engine.history,
            settings.kafka_client_kwargs(),
            settings.policy_poll_interval,
        )
        self.app.task(self._policy_task)
        self.table.on_recover(self._on_recover)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

        async def stats(web: Any, request: Any) -> Any:
            # faust calls a page function as (view, request); a bound method would not fit.
            return web.json(self.stats())

        self.app.page("/stats/")(stats)

        self.metrics = WorkerMetrics(self._metrics_snapshot)
        self.misfire = MisfireDetector(policy.misfire)
        self.recent = RecentDecisions()
        self.router.on_decided = self._observe_decision

        async def healthz(web: Any, request: Any) -> Any:
            # answering at all is the point: the event loop runs
            return web.json({"status": "alive", "phase": self._phase})

        async def readyz(web: Any, request: Any) -> Any:
            why = self._not_ready()
            if why is None:
                return web.json({"ready": True, "partitions": sorted(self._owned)})
            return web.json({"ready": False, "why": why}, status=503)

        async def metrics(web: Any, request: Any) -> Any:
            # aiohttp wants the charset apart from the type
            return web.text(self.metrics.render().decode(), content_type=METRICS_TYPE)

        async def customer(web: Any, request: Any, customer_id: str) -> Any:
            partition = self._partition_of(customer_id)
            if partition not in self._owned:
                return web.json(
                    {"error": f"partition {partition} of customer {customer_id} is not owned "
                              f"by this worker (it owns {sorted(self._owned)})",
                     "partition": partition},
                    status=409,
                )  # fmt: skip
            st = self.store.get(customer_id)
            if st is None:
                return web.json(
                    {"error": f"no state for customer {customer_id}: never seen, or forgotten "
                              "after customer_ttl without activity", "partition": partition},
                    status=404,
                )  # fmt: skip
            return web.json(report(customer_id, st, partition))

        async def dashboard(web: Any, request: Any) -> Any:
            return web.html(DASHBOARD)

        async def dashboard_data(web: Any, request: Any) -> Any:
            counts = self.router.counts
            return web.json(
                dashboard_data_of(
                    self.recent.chart(),
                    list(self.recent.latest),
                    self.engine.held_count(),
                    counts.get("dead_letter", 0),
                    counts.get("late_evidence", 0),
                    [a.describe() for a in self.misfire.active.values()],
                    self.policy.version,
                    sorted(self._owned),
                    iso(int(time.time() * 1000)),
                )
            )

        self.app.page("/dashboard/")(dashboard)
        self.app.page("/dashboard/data")(dashboard_data)
        self.app.page("/customers/{customer_id}/")(customer)
        self.app.page("/healthz")(healthz)
        self.app.page("/readyz")(readyz)
        self.app.page("/metrics")(metrics)

    # ------------------------------------------------------------ lifecycle

    async def _on_recover(self) -> None:
        """faust runs this and never looks at its exception: a failure here would leave
        the worker processing with clocks not resumed and nothing ever published or
        committed. Stop instead; the restart recovers again."""
        try:
            await self._recover()
        except Exception as exc:
            log.exception("recovery failed; stopping")
            await self.app.crash(exc)

    async def _policy_task(self) -> None:
        await self.policy_feed.run(lambda: self.app.should_stop)

    async def _recover(self) -> None:
        # Versions applied live must be known before anything is decided.
        if not self.policy_feed.loaded.is_set():
            try:
                await self.policy_feed.read_once(POLICY_WAIT)
            except TimeoutError:
                log.warning("policy topic not read in %ss: deciding with what is known",
                            POLICY_WAIT)  # fmt: skip
        self._generation += 1
        self._owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic in self._inputs
        }
        self.store.clear_cache()
        delivered = {}
        for p in self._owned:
            raw = self.table.get(self._delivered_keys[p])
            delivered[p] = int(raw) if raw is not None else -1
        t0 = time.perf_counter()
        self._phase = "restoring"
        with self._frozen():
            restoring = self.engine.restoring(self._partition_of, lambda p: delivered.get(p, -1))
            await self._in_steps(restoring.walk, "restoring")
        n, again = restoring.held, restoring.again
        self.loop_stats["last_restore_s"] = round(time.perf_counter() - t0, 3)
        self._phase = "running"
        resumed = await self._resume_clocks()
        # New outbox entries must be newer than anything any earlier run called delivered.
        top = max(delivered.values(), default=-1)
        self.engine.generation = max(self.engine.generation, top + 1)
        self.engine.delivered = min(delivered.values(), default=-1)
        self._pending = [OutRecord(role, key, value) for role, key, value in again]
        if again:
            log.info("re-publishing %d decision(s) not known delivered before", len(again))
        self._next_offset.clear()
        self._committed.clear()
        self._idleness.clear()
        self._marker_sent.clear()
        self._reroute_clear.clear()
        self._local_sent.clear()
        self.router.new_incarnation(uuid.uuid4().hex[:12].encode())
        self._ready = True
        log.info(
            "state recovered: partitions %s, %d held candidates, %d stream clocks resumed",
            sorted(self._owned),
            n,
            resumed,
        )

    async def _resume_clocks(self) -> int:
        """Each owned input stream's frontier, from the metadata of the committed offset
        the consumer resumes at (see streams.checkpoint). Without it a record read again
        after a crash would get a lower arrival frontier than in an uninterrupted run,
        and could see evidence an uninterrupted run calls late."""
        committed = await asyncio.to_thread(self._committed_offsets, True)
        # A partition never committed has no offset for faust to seek back to after
        # recovery: a record fetched while the flow was still suspended would be skipped
        # for good. Start those from their beginning explicitly.
        fresh = [
            tp
            for tp in self.app.consumer.assignment()
            if (tp.topic in self._inputs or tp.topic == self.reroute)
            and (tp.topic, tp.partition) not in committed
        ]
        if fresh:
            starts = await self.app.consumer.earliest_offsets(*fresh)
            for tp, offset in starts.items():
                if offset is not None:
                    await self.app.consumer.seek(tp, offset)
        n = 0
        for (topic, p), (_, meta) in committed.items():
            if topic in self._inputs and p in self._owned:
                frontier = parse_frontier(meta)
                if frontier is not None:
                    self.engine.clock(p).resume(self.role_of[topic], frontier)
                    n += 1
        return n

    async def _on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        self._ready = False
        self._phase = "starting"  # a rebalance: the load of new partitions is not "running"
        try:
            # The next owner restores from the changelog and publishes the outbox entries
            # not recorded as delivered: publish what is pending, record it, and let every
            # write land first (else it would publish them again, and miss late state).
            async with asyncio.timeout(self.settings.session_timeout / 3):
                async with self._handling:
                    await self._publish(handover=True)
                    await self._flush()
                await self.checkpoints.durable()
        except (TimeoutError, WriteFailed, ClientError, KafkaError) as exc:
            log.warning("handing over before every write was acknowledged: %r", exc)
        self._generation += 1
        self.checkpoints.forget((tp.topic, tp.partition) for tp in revoked)
        gone = {tp.partition for tp in revoked if tp.topic in self._inputs}
        # Their outboxes go with the partitions: the new owner publishes them.
        self._pending = [
            r
            for r in self._pending
            if self._partition_of(r.key.decode()) not in gone  # type: ignore[union-attr]
        ]
        self._owned -= gone
        self._reroute_clear -= gone
        self.store.clear_cache()
        self.engine.drop_partitions(gone)

    def _partition_of(self, customer_id: str) -> int:
        return partition_for(customer_id, self.settings.partitions)

    def _partitions_of(self, topic: str) -> int:
        n = self.app.consumer.topic_partitions(topic)
        return n if n else self.settings.partitions

    # ------------------------------------------------------------ the records

    async def _on_batch(self, messages: list[Any], generation: int) -> None:
        """One fetched batch, from the drain loop (streams.consumer), in chunks of
        ``batch_size`` records; the loop fetches no more until this returns."""
        size = self.settings.batch_size
        for start in range(0, len(messages), size):
            if self._stopping.is_set() or self._halted:
                # Shutting down (tables are revoked next, so a state written now could be
                # lost while these records' offsets are committed), or a write failed:
                # leave the records unhandled, they are read again after the restart.
                # Wait here until the fetcher is stopped.
                await self._never.wait()
            async with self._handling:
                if (
                    generation != self.app.consumer_generation_id
                    or not cast(BatchConsumer, self.app.consumer).flow_active
                ):
                    # A rebalance overtook the batch: its partitions may be someone
                    # else's now. The seek to the committed offsets that follows every
                    # rebalance reads what is still ours again.
                    return
                try:
                    await self._handle_batch(messages[start : start + size])
                except (ClientError, WriteFailed) as exc:
                    # The producer refused a write of an applied record (its state stands):
                    # never commit past it. Stop; the restart reads it again.
                    self._halted = True
                    await self._crash(
                        exc if isinstance(exc, WriteFailed)
                        else WriteFailed(f"a write failed: {type(exc).__name__}: {exc}")
                    )  # fmt: skip
                    return
                except Exception as exc:
                    # Not a record's fault (those are dead-lettered inside): a bug in the
                    # batch's bookkeeping. The drain loop has moved past these offsets, so
                    # going on would skip them: stop, and let the restart read them again.
                    self._halted = True
                    log.exception("handling a batch failed; stopping")
                    await self.app.crash(exc)
                    return

    async def _handle_batch(self, messages: list[Any]) -> None:
        """Records as they came, each its own unit of work; then, once per partition the
        batch touched, what used to follow every record: idleness, progress markers and
        the release of held candidates (a decision does not depend on when a release
        runs, only on what each stream delivered before passing the deadline)."""
        wall = now_ms()
        out: list[OutRecord] = []
        last: dict[TP, int] = {}  # input and re-route partitions: last offset in the batch
        sources: set[int] = set()  # partitions whose forwarded records were read back here
        for msg in messages:
            tp = msg.tp
            last[tp] = msg.offset
            try:
                out += self.handle(
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    msg.timestamp,
                    msg.key,
                    msg.value,
                    dict(msg.headers) if msg.headers else None,
                    wall,
                )
            except Exception as exc:
                # Nothing of the record was applied (see handle): log it with its
                # coordinates, count it and dead-letter it alone, then keep going.
                log.exception("failed on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                self.router.counts["internal_error"] += 1
                err = f"internal error: {type(exc).__name__}: {exc}"
                out.append(self.router.dead_letter(msg.topic, msg.partition, msg.offset,
                                                   msg.key, msg.value, err, now_ms()))  # fmt: skip
            if msg.topic == self.reroute and msg.headers:
                src = dict(msg.headers).get(H_SOURCE)
                if src is not None:
                    sources.add(int(src.rsplit(b":", 2)[1]))
        out += self._after_batch(last, sources, wall)
        await self._write(out)
        for tp, offset in last.items():
            self.checkpoints.close(
                (tp.topic, tp.partition), offset + 1, self._commit_meta(tp.topic, tp.partition)
            )
        if self.store.dirty >= self.settings.max_dirty:
            await self._flush()

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float | None,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes] | None = None,
        wall: int | None = None,
    ) -> list[OutRecord]:
        """One record as one unit of work, without awaiting: its state changes reach the
        store only if all of it succeeds (else it raises and nothing was applied). Returns
        what to write. Releases follow in ``_after_batch``."""
        if wall is None:
            wall = now_ms()
        record_ms = int(timestamp * 1000) if timestamp else wall
        self._next_offset[TP(topic, partition)] = offset + 1
        # One unit of work: state changes reach the table only if all of it succeeds;
        # otherwise the record alone goes to dead-letter (see _handle_batch).
        self.store.begin()
        self.engine.begin()
        try:
            out = self.router.on_record(
                topic, partition, offset, record_ms, key, value, wall, headers
            )
        except BaseException:
            self.store.rollback()
            self.engine.rollback()
            raise
        self.store.commit()
        self.engine.commit()
        return out

    def _after_batch(self, last: dict[TP, int], sources: set[int], wall: int) -> list[OutRecord]:
        """Idleness, markers and releases for the partitions a batch touched, as one unit
        of work. A failure here is a bug outside any one record's data: nothing of it is
        applied, the candidates stay held (the next batch or tick tries again), and no
        record is blamed for it."""
        self.store.begin()
        self.engine.begin()
        try:
            now = time.monotonic()
            out: list[OutRecord] = []
            touched: dict[int, None] = {}
            for tp, offset in last.items():
                touched[tp.partition] = None
                hw = self.app.consumer.highwater(tp)
                caught_up = hw is not None and hw >= 0 and offset + 1 >= hw
                if tp.topic != self.reroute:
                    self._set_idle(tp, caught_up, now, received=True)
                elif caught_up:
                    # read to an end offset fetched since recovery: whatever an earlier run
                    # forwarded there is read (the idle timer finds this too, later)
                    self._reroute_clear.add(tp.partition)
            for p in {tp.partition: None for tp in last if tp.topic != self.reroute}:
                out += self._markers(p, now, self.settings.marker_interval)
                out += self._local_markers(p, wall)
            for src in sorted(sources & self._owned):
                # forwarded records read back: their source's in-memory marker may apply now
                out += self._local_markers(src, wall, force=True)
            for p in touched:
                out += self.router.release(p, wall)
        except Exception:
            self.store.rollback()
            self.engine.rollback()
            log.exception("releasing after a batch failed; the candidates stay held")
            self.router.counts["internal_error"] += 1
            return []
        self.store.commit()
        self.engine.commit()
        return out

    async def _flush(self) -> None:
        """Write back every customer changed since the last flush: one changelog record
        each, sent without waiting; the records read meanwhile wait for them (their
        offsets) through the checkpoint ledger. One flush at a time: two overlapping
        ones could put an older value of a customer last in the changelog."""
        async with self._flushing:
            dirty = self.store.take_dirty()
            epoch = self.checkpoints.flush_begins()
            if not dirty:
                Checkpoints.flushed(epoch, [])
                return
            send = self.app.producer.send
            topic = self._changelog
            partitions = self.settings.partitions
            writes: list[Any] = []
            perf = time.perf_counter
            snapshot: LocalSnapshot | None = getattr(self.table.data, "snapshot", None)
            try:
                deadline = perf() + STEP_BUDGET
                for key, value in dirty.items():
                    p = partition_for(key.decode("utf-8"), partitions)
                    writes.append(await send(topic, key, value, p, None, None))
                    if snapshot is not None:  # the rocksdb:// copy, as each is acknowledged
                        snapshot.on_sent(key, value, writes[-1], p)
                    if perf() >= deadline:
                        # a sweep can leave a million customers to write: not in one piece
                        await give_way()
                        deadline = perf() + STEP_BUDGET
            except BaseException as exc:
                # Not all sent, and the rest is out of _dirty: whoever waits for this flush
                # must never commit past it; the worker stops and recovers from Kafka.
                failed = self.app.loop.create_future()
                failed.set_exception(
                    exc if isinstance(exc, Exception) else WriteFailed("flush cancelled")
                )
                writes.append(failed)
                Checkpoints.flushed(epoch, writes)
                if isinstance(exc, ClientError):
                    raise WriteFailed(f"state write-back failed: {exc!r}") from exc
                raise
            Checkpoints.flushed(epoch, writes)
            if snapshot is not None:
                self._copy_when_acknowledged(snapshot, writes)

    def _copy_when_acknowledged(self, snapshot: LocalSnapshot, writes: list[Any]) -> None:
        """Once the flush is acknowledged, its writes (and earlier ones) go into the
        rocksdb:// local copy, a step at a time (see streams.snapshot)."""

        def all_done(_: asyncio.Future[Any]) -> None:
            if snapshot.closed:
                return
            if self._copying is None or self._copying.done():
                self._copying = asyncio.ensure_future(self._copy_acked(snapshot))

        asyncio.gather(*writes, return_exceptions=True).add_done_callback(all_done)

    async def _copy_acked(self, snapshot: LocalSnapshot) -> None:
        """Write the acknowledged write-backs into the local copy, a step at a time."""
        while snapshot.write_acked(limit=COPY_STEP):
            await give_way()

    def _commit_meta(self, topic: str, partition: int) -> str:
        """What a commit of this input stream carries: its frontier (re-route: nothing;
        a forwarded record's arrival frontier travels in its headers)."""
        if topic == self.reroute:
            return ""
        clock = self.engine.clock(partition)
        role = self.role_of[topic]
        frontier = clock.frontier(role)
        return frontier_meta(None if frontier == NEVER else frontier)

    def _local_markers(self, source: int, wall: int, force: bool = False) -> list[OutRecord]:
        """The same progress markers, handed over in memory to the partitions this worker
        owns too, and released there: no round trip through Kafka. Only where it is as
        good as the marker in the topic: every record this run forwarded from ``source``
        to the target has been read back, and the target's re-route partition was seen
        caught up since recovery (nothing an earlier run forwarded is still unread)."""
        if self.settings.partitions < 2 or not self._reroute_clear:
            return []
        local = self.engine.clock(source).local()
        snapshot = orjson.dumps(local)
        if not force and self._local_sent.get(source) == snapshot:
            return []
        self._local_sent[source] = snapshot
        out: list[OutRecord] = []
        for target in self._reroute_clear:
            if target == source or target not in self._owned:
                continue
            if not self.router.settled(source, target):
                continue
            clock = self.engine.clock(target)
            stamp = time.time_ns()
            for role, (frontier, idle) in local.items():
                clock.set_remote((role, source), frontier, idle, stamp)
            out.extend(self.router.release(target, wall))
        return out

    def _set_idle(self, tp: TP, caught_up: bool, now: float, received: bool = False) -> None:
        idle = self._idleness.update(tp, caught_up, now, received)
        self.engine.clock(tp.partition).set_idle(self.role_of[tp.topic], idle)

    def _markers(
        self, partition: int, now: float, min_interval: float, heartbeat: bool = False
    ) -> list[OutRecord]:
        """Progress markers of one partition: when its frontiers or idleness changed (at most
        every ``min_interval``), and on every tick as a heartbeat for restarted peers."""
        if self.settings.partitions < 2:
            return []
        last = self._marker_sent.get(partition)
        if not heartbeat and last is not None and now - last[0] < min_interval:
            return []
        state = orjson.dumps(self.engine.clock(partition).local())
        if not heartbeat and last is not None and last[1] == state:
            return []
        self._marker_sent[partition] = (now, state)
        return self.router.markers(partition, self.settings.partitions, time.time_ns())

    async def _write(self, records: list[OutRecord]) -> None:
        # Decisions wait for _publish (their state must be durable first). Queue them all
        # before the first await below: a publish cycle must never see half of them.
        queued = len(self._pending)
        for r in records:
            if r.role in PUBLISHED:
                self._pending.append(r)
        if len(self._pending) > queued:
            self._publish_due.set()
        for r in records:
            if r.role in PUBLISHED:
                continue
            if r.role == "reroute":
                ts = None if r.timestamp_ms is None else r.timestamp_ms / 1000
                fut = await self.app.producer.send(
                    self.reroute, r.key, r.value, r.partition, ts, list(r.headers)
                )
            else:
                fut = await self.app.producer.send(
                    self.out[r.role], r.key, r.value, None, None, None
                )
            # the record's offset waits for these too: a forwarded copy or a dead letter
            # must not be lost with the input offset committed
            self.checkpoints.track(fut)  # type: ignore[arg-type]

    # ------------------------------------------------------------ delivery

    async def _publish(self, handover: bool = False) -> None:
        """Publish the pending decisions whose state is durable, then record delivery.

        1. every state write made so far (the outboxes holding these decisions among
           them) is acknowledged;
        2. send the decisions and wait for their acknowledgements;
        3. write the delivered generation into each owned partition's table.
        A crash before 1 completes loses no decision (it was never sent; its input is
        read again); after 1, recovery publishes the outbox entries newer than the
        delivered generation again: byte-identical copies, never a different one.

        ``handover``: partitions are about to move or the worker stops; the cycle runs
        even with nothing pending, so that what earlier cycles published (one may have
        been cut short by the rebalance) is recorded while the partitions are ours."""
        async with self._publishing:
            if not handover and (not self._pending or not self._ready or self.app.rebalancing):
                return
            await self._publish_cycle(handover)

    async def _publish_cycle(self, handover: bool) -> None:
        generation = self._generation
        batch, self._pending = self._pending, []
        gen = self.engine.generation
        self.engine.generation += 1
        try:
            await self._flush()
            await self.checkpoints.durable()
            send = self.app.producer.send
            sent = [await send(self.out[r.role], r.key, r.value, None, None, None) for r in batch]
            await asyncio.gather(*sent)
        except ClientError as exc:
            # Nothing is recorded as delivered: they stay pending (and in the outboxes).
            log.warning("publishing %d decision(s) failed (%s); will retry", len(batch), exc)
            self._pending[:0] = batch
            return
        except BaseException:
            self._pending[:0] = batch
            raise
        if not handover and (
            generation != self._generation or not self._ready or self.app.rebalancing
        ):
            # A rebalance came in between: the partitions' next owner (maybe this worker,
            # recovered) decides what was delivered; an old generation must not count.
            return
        self.engine.delivered = max(self.engine.delivered, gen)
        for p in sorted(self._owned):
            # faust sends this changelog write at once (its producer buffer), not with
            # the next flush: until it is in, a crash publishes these decisions again
            self.table[self._delivered_keys[p]] = str(gen).encode()

    async def _publisher(self) -> None:
        """Publish cycles for as long as the app runs: one starts as soon as decisions
        are queued and the previous cycle is done (a cycle waits for the broker twice,
        so decisions queued meanwhile go out together in the next), or after
        ``publish_interval`` without one (decisions a failed cycle or a recovery left
        pending). Polling on a fixed interval instead cost a decision half an interval
        plus the cycle it missed: about 45 ms of a 70 ms median at 1,000 records/s."""
        await self._cycles(self.settings.publish_interval, self._publish, self._publish_due)

    async def _committer(self) -> None:
        """Commit cycles: every ``commit_interval``, the offsets whose records' writes
        are all acknowledged (see streams.checkpoint)."""
        await self._cycles(self.settings.commit_interval, self._commit)

    async def _cycles(
        self,
        interval: float,
        cycle: Callable[[], Awaitable[None]],
        wake: asyncio.Event | None = None,
    ) -> None:
        """``cycle`` every ``interval``, or as soon as ``wake`` is set (then at the latest
        ``interval`` after the previous one: the fallback when nothing sets it)."""
        while not self.app.should_stop:
            if wake is None:
                await asyncio.sleep(interval)  # pacing the cycles
            else:
                with contextlib.suppress(TimeoutError):  # the fallback cycle
                    async with asyncio.timeout(interval):
                        await wake.wait()
                wake.clear()
            try:
                await cycle()
            except WriteFailed as exc:
                await self._crash(exc)
                return

    async def _crash(self, exc: WriteFailed) -> None:
        """A state or forward write was rejected: memory is ahead of Kafka. Stop (exit
        non-zero); a restart recovers from what Kafka holds and reads the records again."""
        log.error("stopping: %s", exc)
        await self.app.crash(exc)

    async def _commit(self) -> None:
        if not self._ready or self.app.rebalancing:
            return
        await self._flush()
        offsets = self.checkpoints.committable()
        if not offsets:
            return
        generation = self._generation
        try:
            await self.app.consumer._thread.call_thread(self._commit_in_thread, offsets)  # type: ignore[attr-defined]
        except ClientError as exc:
            # Not committed: those records are read again later and skipped as applied.
            log.warning("committing offsets failed (%s); will retry", exc)
            return
        if generation == self._generation:
            self.checkpoints.committed(offsets)

    async def _commit_in_thread(self, offsets: dict[tuple[str, int], tuple[int, str]]) -> None:
        """Runs on faust's consumer thread, which owns the aiokafka consumer. faust's own
        commit cannot carry metadata, hence this."""
        thread = self.app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._ensure_consumer()
        assigned = consumer.assignment()
        todo = {
            ClientTP(t, p): OffsetAndMetadata(offset, meta)
            for (t, p), (offset, meta) in offsets.items()
            if ClientTP(t, p) in assigned
        }
        if todo:
            await consumer.commit(todo)
            now = time.monotonic()
            # faust's stall detector logs "no commit" warnings from this map
            thread.tp_last_committed_at.update({TP(tp.topic, tp.partition): now for tp in todo})

    async def _final_publish(self) -> None:
        """On a clean stop: no more records processed; the last decisions out, their
        delivery recorded and flushed."""
        self._stopping.set()
        try:
            # Bounded: with the broker gone a flush waits for ever, and a stopping worker
            # must be gone before its partitions are given to another one.
            async with asyncio.timeout(self.settings.session_timeout / 3):
                async with self._handling:  # the record in hand is finished first
                    pass
                if self._pending:
                    log.info("publishing %d decision(s) before stopping", len(self._pending))
                await self._publish(handover=True)
                await self._flush()
                await self.checkpoints.durable()
                await self._commit()
        except (ClientError, KafkaError, TimeoutError, WriteFailed) as exc:
            # the outboxes keep the decisions, and the records are read again
            log.warning(
                "could not publish and commit before stopping (%s: %s); done on restart",
                type(exc).__name__,
                exc,
            )

    # ------------------------------------------------------------ timers

    async def _tick(self) -> None:
        self._check_misfires()
        try:
            await self._tick_once()
        except ClientError as exc:
            # The broker is unreachable: nothing is idle and nothing is released by wall
            # clock until it answers again (a timer that raised would stop the worker).
            log.warning("idle check skipped: %s: %s", type(exc).__name__, exc)

    async def _tick_once(self) -> None:
        """Mark caught-up partitions idle; release by wall clock where all is quiet.

        Every await (broker round trips) happens first; the decisions are then made
        without yielding, and only if no rebalance started meanwhile, for partitions
        this worker still owns: a tick that straddles a rebalance must not decide
        candidates that already belong to another worker.
        """
        if not self._ready or self.app.rebalancing:
            return
        generation = self._generation
        tps = {tp for tp in self.app.consumer.assignment() if tp.topic in self._inputs}
        if not tps:
            return
        # Heartbeat first: the end-offset look-ups below wait for the consumer thread.
        now = time.monotonic()
        beat: list[OutRecord] = []
        for p in sorted({tp.partition for tp in tps} & self._owned):
            beat.extend(self._markers(p, now, 0.0, heartbeat=True))
        await self._write(beat)
        reroute_tps = {tp for tp in self.app.consumer.assignment() if tp.topic == self.reroute} - {
            TP(self.reroute, p) for p in self._reroute_clear
        }
        ends = await self.app.consumer.highwaters(*tps, *reroute_tps)
        unseen = [
            tp
            for tp in tps | reroute_tps
            if tp not in self._next_offset and tp not in self._committed
        ]
        starts = await self._start_offsets(unseen) if unseen else {}
        if generation != self._generation or not self._ready or self.app.rebalancing:
            return
        self._committed.update(starts)
        out: list[OutRecord] = []
        wall = now_ms()
        now = time.monotonic()
        for tp in tps:
            end = ends.get(tp)
            if end is None or tp.partition not in self._owned:
                continue
            done = self._next_offset.get(tp, self._committed.get(tp))
            self._set_idle(tp, done is not None and done >= end, now)
        for tp in reroute_tps:
            end = ends.get(tp)
            done = self._next_offset.get(tp, self._committed.get(tp))
            if end is not None and done is not None and done >= end:
                self._reroute_clear.add(tp.partition)
        owned = sorted({tp.partition for tp in tps} & self._owned)
        for p in owned:
            out.extend(self._markers(p, now, 0.0))  # idleness changed: tell the others now
            out.extend(self._local_markers(p, wall, force=True))
        for p in owned:
            out.extend(self.router.release_idle(p, wall))
        await self._write(out)

    async def _sweeper(self) -> None:
        """Sweeps, every ``sweep_interval``, in steps of at most ``STEP_BUDGET``: with a
        million customers a sweep takes seconds, and the records, heartbeats and the web
        page must not wait for it. Each step runs between two batches (a sweep changes
        state outside any record: the next record's offset waits for that write too)."""
        while not self.app.should_stop:
            await asyncio.sleep(self.settings.sweep_interval)  # pacing the sweeps
            if self._ready:
                try:
                    with self._frozen():
                        await self._sweep()
                finally:
                    self._phase = "running"

    async def _sweep(self) -> None:
        generation = self._generation
        t0 = time.perf_counter()
        self._phase = "sweeping"
        steps = self.engine.sweeping(self.store.keys(), self._partition_of)
        dropped = 0
        while True:
            async with self._handling:
                if generation != self._generation or not self._ready:
                    return  # partitions moved: the next sweep starts over
                t1 = time.perf_counter()
                c1 = time.thread_time()
                deadline = t1 + STEP_BUDGET
                done = True
                for gone in steps:
                    dropped += gone
                    if time.perf_counter() >= deadline:
                        done = False
                        break
                took = (time.perf_counter() - t1) * 1000
                if took > self.loop_stats.get("longest_step_ms_sweeping", 0.0):
                    self.loop_stats["longest_step_ms_sweeping"] = round(took, 1)
                    # the thread's own CPU time in that step: the rest was waiting (the
                    # GIL, or the OS running the broker on the same cores)
                    cpu = (time.thread_time() - c1) * 1000
                    self.loop_stats["longest_step_cpu_ms_sweeping"] = round(cpu, 1)
            if done:
                took = time.perf_counter() - t0
                self.loop_stats["last_sweep_s"] = round(took, 3)
                log.info("sweep: %d customers expired in %.1f s", dropped, took)
                return
            await give_way()

    async def _in_steps(self, steps: Iterator[Any], name: str) -> None:
        """Run ``steps`` to the end, giving the event loop back every ``STEP_BUDGET``; the
        longest step goes to ``/stats/`` (``loop``: ``longest_step_ms_<name>``)."""
        key = f"longest_step_ms_{name}"
        while True:
            t0 = time.perf_counter()
            deadline = t0 + STEP_BUDGET
            done = True
            for _ in steps:
                if time.perf_counter() >= deadline:
                    done = False
                    break
            took = (time.perf_counter() - t0) * 1000
            if took > self.loop_stats.get(key, 0.0):
                self.loop_stats[key] = round(took, 1)
            if done:
                return
            await give_way()

    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """A walk over every customer (restore, sweep): the key list is taken first, as
        its own piece of work, and everything alive then is left out of the collector's
        full passes for good (``gc.freeze``, as long-running servers do after start).
        One full pass over a million customers' objects stalled the loop 50-110 ms; with
        them unfrozen after the walk, the next full pass did (96 ms). Frozen objects are
        still freed by reference counting; only cycles among them would outlive their
        use, and ``/stats/`` shows how many objects are frozen (``loop.gc_frozen``)."""
        self.store.snapshot_keys()
        gc.freeze()
        try:
            yield
        finally:
            self.store.drop_snapshot()  # a walk cut short must not leave it to the next
            self.loop_stats["gc_frozen"] = gc.get_freeze_count()

    async def _watch_loop(self) -> None:
        """The longest the event loop went without running this task, per phase (starting,
        restoring, running, sweeping): what a stall (a long sweep step, a slow batch) cost
        everything else, heartbeats and the web page included. With it, the loop thread's
        own CPU time over that probe interval (``..._cpu_ms``: the 10 ms sleep plus the
        stall); a stall well above it was waiting, for the GIL (faust's consumer thread)
        or for a core (the OS running the broker)."""
        tick = 0.01
        perf, cpu = time.perf_counter, time.thread_time
        while not self.app.should_stop:
            t0, c0 = perf(), cpu()
            await asyncio.sleep(tick)  # the probe: how late does a 10 ms sleep wake up?
            stall = (perf() - t0 - tick) * 1000
            key = f"max_stall_ms_{self._phase}"
            if stall > self.loop_stats.get(key, 0.0):
                self.loop_stats[key] = round(stall, 1)
                self.loop_stats[f"{key}_cpu_ms"] = round((cpu() - c0) * 1000, 1)
                self.loop_stats[f"{key}_at"] = round(time.time(), 3)  # when it ended

    async def _start_offsets(self, tps: list[TP]) -> dict[TP, int]:
        """Where processing of partitions not read since start begins: committed, else earliest."""
        committed = await asyncio.to_thread(self._committed_offsets)
        out: dict[TP, int] = {}
        missing = []
        for tp in tps:
            off = committed.get((tp.topic, tp.partition))
            if off is None:
                missing.append(tp)
            else:
                out[tp] = off
        if missing:
            earliest = await self.app.consumer.earliest_offsets(*missing)
            out.update({tp: off for tp, off in earliest.items() if off is not None})
        return out

    def _committed_offsets(self, strict: bool = False) -> dict[tuple[str, int], Any]:
        """Committed offsets of the group, with their metadata when ``strict`` (then a
        failure raises: recovery must not guess a clock)."""
        attempts = 5 if strict else 1
        for attempt in range(attempts):
            try:
                if self._admin is None:
                    self._admin = admin_client(self.settings)
                offsets = self._admin.list_consumer_group_offsets(self.settings.app_id)
                break
            except KafkaError as exc:
                # e.g. a connection left over from before a broker restart: a new client
                if self._admin is not None:
                    self._admin.close()
                self._admin = None
                if attempt + 1 < attempts:
                    time.sleep(1.0)  # in a worker thread: backing off before asking again
                    continue
                if strict:
                    raise
                log.warning("cannot read committed offsets (%s); treating partitions as busy", exc)
                return {}
        return {
            (tp.topic, tp.partition): (meta.offset, meta.metadata) if strict else meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0
        }

    # ------------------------------------------------------------ web

    def _not_ready(self) -> str | None:
        """Why this worker should not get traffic now (None: ready)."""
        if self.app.should_stop:
            return "stopping"
        if not self._ready:
            return "recovering state or handing over partitions (rebalance)"
        if self.app.rebalancing:
            return "rebalancing"
        if not self._owned:
            return "no input partitions assigned"
        return None

    def _observe_decision(self, d: Decided) -> None:
        self.metrics.observe_decision((d.decided_wall - d.candidate.record_time) / 1000)
        rule = d.decision.rule if d.decision.action == "suppress" else None
        self.misfire.observe(d.candidate.created_at, rule)
        self.recent.observe(d)

    def _check_misfires(self) -> None:
        started, recovered = self.misfire.check()
        for alarm in started:
            log.warning("%s", alarm.describe(), extra={"rule": alarm.rule, "misfire": True})
        for rule in recovered:
            log.info("rule %s back to its usual suppression rate", rule, extra={"rule": rule})

    def _metrics_snapshot(self) -> Snapshot:
        counts = self.router.counts
        rules = {
            k.split(":", 1)[1]: v for k, v in self.engine.counts.items() if k.startswith("rule:")
        }
        lag: dict[tuple[str, int], int] = {}
        consumer = self.app.consumer if self._ready else None
        if consumer is not None:
            for tp in consumer.assignment():
                if tp.topic not in self._inputs:
                    continue
                hw = consumer.highwater(tp)
                nxt = self._next_offset.get(tp)
                if hw is not None and hw >= 0 and nxt is not None:
                    lag[(tp.topic, tp.partition)] = max(0, hw - nxt)
        return Snapshot(
            actions={a: counts.get(a, 0) for a in ("send", "rewrite", "suppress")},
            rules=rules,
            held=self.engine.held_count(),
            dead_letters=counts.get("dead_letter", 0),
            late_evidence=counts.get("late_evidence", 0),
            misrouted=dict(self.router.misrouted),
            lag=lag,
            ready=self._not_ready() is None,
            misfiring={rule: a.recent_rate for rule, a in self.misfire.active.items()},
        )

    def stats(self) -> dict[str, Any]:
        """What the stats page shows: counts an operator checks first."""
        return {
            "worker": dict(self.router.counts),
            "misrouted": dict(self.router.misrouted),
            "engine": dict(self.engine.counts),
            "held": self.engine.held_count(),
            "customers": len(self.table),
            "policy": self.policy.version,
            "policy_versions": self.engine.history.summary(),
            "misfires": [a.describe() for a in self.misfire.active.values()],
            "policy_rejected": [
                {"seq": seq, "error": why} for seq, why in self.engine.history.rejected
            ],
            "loop": dict(self.loop_stats),
            "waiting_for": {
                p: self.engine.clock(p).waiting_for()
                for p in sorted(self._owned)
                if self.engine.held_count(p)
            },
        }
