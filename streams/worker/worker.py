"""The worker: wires the processor into a faust App, and runs its lifecycle (recovery on
assignment, hand-over on revocation, the start and the stop).

No rule logic lives here, and no record handling either. What each piece does:

- ``streams.kafka.batch_consumer``: faust's consumer hands each fetched batch over;
- ``streams.worker.batches``: each record through the processor as a unit of work,
  then idleness, markers and releases (``streams.processing``);
- ``streams.worker.delivery``: publish cycles (decisions out once their state is
  durable) and offset commits;
- ``streams.worker.idle_check``: the periodic check of end offsets;
- ``streams.worker.maintenance``: sweeps and the restore, in steps, and the stall probe;
- ``streams.worker.web``: health, readiness, metrics, stats, the dashboard.

Customer state, held candidates included, lives in a changelogged table, so a held
message survives a crash and is decided after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from faust.types import TP

from streams.core.engine import Engine
from streams.core.outbox import Outbox
from streams.core.policy import Policy
from streams.core.vocabulary import INPUT_KINDS
from streams.kafka.batch_consumer import BatchSink, FetchTuning, ShellHooks
from streams.kafka.offsets import CommittedOffsets
from streams.processing.processor import Processor
from streams.processing.records import OutRecord
from streams.processing.watermarks import Watermarks
from streams.settings import Settings
from streams.worker.app import DurableTable, Lifecycle, WorkerApp, app_config, now_ms
from streams.worker.batches import Batches
from streams.worker.campaign_feed import CampaignFeed
from streams.worker.changelog import PartitionedData
from streams.worker.checkpoint import Checkpoints, WriteFailed, parse_frontier
from streams.worker.delivery import Delivery
from streams.worker.exactly_once import TransactionalDelivery
from streams.worker.fetches import ConsumerFetches
from streams.worker.idle_check import IdleCheck
from streams.worker.link_rows import LinkRows
from streams.worker.maintenance import Maintenance
from streams.worker.ownership import Ownership
from streams.worker.policy_feed import PolicyFeed
from streams.worker.replicas import Replicas
from streams.worker.restart import restart
from streams.worker.snapshot import LocalSnapshot
from streams.worker.table_store import TableStore
from streams.worker.web import Observers, Web

log = logging.getLogger("trigger_sanity.worker")

POLICY_WAIT = 30.0
"""Seconds recovery waits for the policy topic to be read once before deciding."""


class Worker:
    """One Engine in a faust App: topics, table, and the pieces that move records."""

    def __init__(self, settings: Settings, policy: Policy, after_outage: bool = False) -> None:
        """``after_outage``: this process is the worker restarting itself after a
        transaction failed for a passing cause (``streams.cli.worker.restart``)."""
        self.settings = settings
        self.policy = policy
        topics = settings.topics
        self.role_of = topics.role_of()
        self.inputs = frozenset(topics.inputs)
        self.reroute = settings.reroute_topic
        self.app = WorkerApp(
            settings.app_id,
            shell=ShellHooks(
                fetch_tuning=FetchTuning(settings.fetch_min_bytes, settings.fetch_max_wait_ms)
            ),
            lifecycle=Lifecycle(self._stop, settings.session_timeout * 0.8),
            **app_config(settings),
        )
        self.checkpoints = Checkpoints()
        self.table = self._customers_table()
        self.ownership = Ownership(settings.partitions, lambda: self.app.rebalancing)
        self.store = TableStore(
            self._memory, self.ownership.owns, self.checkpoints, settings.state_cache
        )
        self.outbox = Outbox(self._render)
        self.engine = Engine(
            policy, self.store, partitions=settings.partitions, rerouted=True,
            outbox=self.outbox, replicas=True,
        )  # fmt: skip
        self.replicas = Replicas(self.engine, self.store, settings.partitions)
        self.links = LinkRows(self.engine, self.store, settings.partitions)
        self.processor = Processor(
            self.engine, self.role_of, self._partitions_of, settings.max_record_bytes,
            reroute_topic=self.reroute,
        )  # fmt: skip
        self.watermarks = Watermarks(
            self.processor, settings.partitions, settings.idle_after, settings.marker_interval,
            self.reroute, inputs=topics.inputs,
            marker_expiry=settings.caught_up_within + 2 * settings.idle_check_interval,
        )  # fmt: skip
        self._pieces()
        self.app.lifecycle.overdue = self._restart_if_passing
        if after_outage:
            self.fetches.answering.after_outage(time.time() * 1000)
            log.warning(
                "restarted after an outage: input partitions are not taken as caught up "
                "for %.0f s (TRIGGER_SANITY_OUTAGE_GRACE)",
                settings.outage_grace,
            )
        self._wire()

    def _customers_table(self) -> DurableTable:
        """Customer state, held candidates and outboxes included: changelogged, so they
        move with their partition and survive a crash."""
        settings = self.settings
        table = DurableTable(
            self.app,
            checkpoints=self.checkpoints,
            client_kwargs=settings.kafka_client_kwargs(),
            snapshot_factory=self._snapshot if settings.keeps_local_copy else None,
            before_load=self._claim,
            kept_end=self._kept_end if settings.exactly_once else None,
            name="customers",
            beacon=self.app.tables.beacon,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            # Delivery markers are written through the table: route changelog writes by
            # key hash, the same murmur2 partition as the input records.
            use_partitioner=True,
        )
        self.app.tables.add(table)
        return table

    def _pieces(self) -> None:
        """The pieces that move records, each given only what it works on."""
        settings, app = self.settings, self.app
        kind = TransactionalDelivery if settings.exactly_once else Delivery
        self.delivery = kind(
            settings, app, self.table, self.store, self.checkpoints, self.outbox, self.ownership
        )
        self.delivery.before_flush = self._save_rows
        # campaign counts go out with the commit cycles, never after a batch: what they tell
        # is then recorded with them (see Delivery.commit, TransactionalDelivery._seal)
        self.watermarks.counts_at_commit = True
        self.delivery.before_seal = self._counts_at_commit
        self.fetches = ConsumerFetches(app, settings.caught_up_within, settings.outage_grace)
        self.batches = Batches(
            settings, app, self.processor, self.watermarks, self.store, self.checkpoints,
            self.delivery, self.ownership, self.fetches,
        )  # fmt: skip
        self.offsets = CommittedOffsets(settings)
        self.idle_check = IdleCheck(
            app, self.inputs, self.reroute, self.watermarks, self.delivery, self.ownership,
            self.offsets, self.fetches,
        )  # fmt: skip
        self.maintenance = Maintenance(
            settings, self.engine, self.store, self.ownership, self.batches.handling,
            lambda: app.should_stop,
            lambda: sum(self.processor.counts.get(k, 0) for k in INPUT_KINDS),
        )  # fmt: skip
        self.idle_check.caught_up = lambda: self.maintenance.caught_up(self.maintenance.handled())
        self.observers = Observers(self.policy)
        self.processor.on_decided = self.observers.on_decided
        self.web = Web(
            app, self.policy, self.processor, self.table, self.store, self.ownership,
            self.batches, self.maintenance, self.observers,
        )  # fmt: skip
        self.policy_feed = PolicyFeed(
            settings.topics["policy"],
            self.engine.history,
            settings.kafka_client_kwargs(),
            settings.policy_poll_interval,
        )
        self.campaign_feed = CampaignFeed(
            settings.topics["campaigns"],
            self.engine,
            settings.kafka_client_kwargs(),
            settings.policy_poll_interval,
        )

    def _wire(self) -> None:
        app, settings = self.app, self.settings
        app.lifecycle.early_tasks = (self.maintenance.watch_loop,)
        # No faust agent: the drain loop hands fetched batches straight to the batches
        # (streams.kafka.batch_consumer); subscribing the topics is all faust does here.
        inputs = app.topic(
            *self.inputs,
            self.reroute,
            key_serializer="raw",
            value_serializer="raw",
            acks=False,  # offsets are committed by the delivery, never by faust
        )
        app.topics.add(inputs)
        app.shell.batch_sink = BatchSink(frozenset(inputs.topics), self.batches.on_batch)
        app.timer(settings.idle_check_interval, name="idle-check")(self._tick)
        watch_every = min(0.25, settings.caught_up_within / 4)
        app.timer(watch_every, name="answer-watch")(self._watch_answers)
        app.task(self.delivery.publisher)
        app.task(self.delivery.committer)
        app.task(self.maintenance.sweeper)
        app.task(self._policy_task)
        app.task(self._campaign_task)
        self.table.on_recover(self._on_recover)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.web.register()

    def _snapshot(self, topic: str, partitions: int) -> LocalSnapshot:
        s = self.settings
        path = s.data_dir / "state" / f"{topic}.rocksdb"
        return LocalSnapshot(path, topic, partitions, s.snapshot_max_age)

    def _memory(self) -> PartitionedData:
        return self.table.memory.data

    def _render(self, o: object) -> tuple[tuple[str, bytes, bytes], ...]:
        return self.processor.render_one(o)  # type: ignore[arg-type]

    def _save_rows(self) -> None:
        """Rows that are no customer, written with the customers they go with."""
        self.replicas.save(self.ownership.owned)
        self.links.save(self.ownership.owned)

    def _counts_at_commit(self) -> list[OutRecord]:
        owned = self.ownership.owned
        return self.watermarks.all_campaign_counts(sorted(owned), owned, now_ms())

    def _partitions_of(self, topic: str) -> int:
        n = self.app.consumer.topic_partitions(topic)
        return n if n else self.settings.partitions

    # ------------------------------------------------------------ lifecycle

    async def _tick(self) -> None:
        self.observers.check_misfires()
        self.observers.check_trips(self.engine)
        await self.idle_check.tick()

    async def _watch_answers(self) -> None:
        """Outages are noticed while they last (see ``ConsumerFetches.watch``)."""
        own = self.ownership
        if not own.active:
            return
        self.fetches.watch(
            [
                (tp.topic, tp.partition)
                for tp in self.app.consumer.assignment()
                if tp.topic in self.inputs and tp.partition in own.owned
            ]
        )

    async def _policy_task(self) -> None:
        await self.policy_feed.run(lambda: self.app.should_stop)

    async def _campaign_task(self) -> None:
        if self.engine.replicated:
            await self.campaign_feed.run(lambda: self.app.should_stop)

    def _restart_if_passing(self) -> None:
        """The stop took too long (the broker is gone): if it follows a failure a
        restart gets past, restart in place rather than exit."""
        reason = self.delivery.restart_reason()
        if reason is not None:
            restart(reason)

    def _kept_end(self, partition: int) -> int | None:
        return self.delivery.changelog_end(partition)

    async def _claim(self, partitions: list[int]) -> None:
        """Before an assignment's changelog is read (see ``TransactionalDelivery``). A
        failure stops the worker: it must not read state a fenced holder may still
        change."""
        try:
            await self.delivery.claim(partitions)
        except WriteFailed as exc:
            log.error("stopping: %s", exc)
            await self.app.crash(exc)
            raise

    async def _on_recover(self) -> None:
        """faust runs this and never looks at its exception: a failure here would leave
        the worker processing with clocks not resumed and nothing ever published or
        committed. Stop instead; the restart recovers again."""
        try:
            await self._recover()
        except Exception as exc:
            log.exception("recovery failed; stopping")
            await self.app.crash(exc)

    async def _recover(self) -> None:
        # Versions applied live must be known before anything is decided.
        if not self.policy_feed.loaded.is_set():
            try:
                await self.policy_feed.read_once(POLICY_WAIT)
            except TimeoutError:
                log.warning("policy topic not read in %ss: deciding with what is known",
                            POLICY_WAIT)  # fmt: skip
        if self.engine.replicated and not self.campaign_feed.loaded.is_set():
            try:
                await self.campaign_feed.read_once(POLICY_WAIT)
            except TimeoutError:
                log.warning("campaigns topic not read in %ss: deciding with what is known",
                            POLICY_WAIT)  # fmt: skip
        own = self.ownership
        own.recovering(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic in self.inputs
        )
        self.store.clear_cache()
        delivered = {p: self.delivery.delivered_of(p) for p in own.owned}
        t0 = time.perf_counter()
        self.maintenance.phase = "restoring"
        with self.maintenance.frozen():
            restoring = self.engine.restoring(own.partition_of, lambda p: delivered.get(p, -1))
            # the campaign replicas first: the walk leaves them the candidates they have
            campaigns = self.replicas.load(own.owned)
            links = self.links.load(own.owned)
            await self.maintenance.in_steps(restoring.walk, "restoring")
        self.maintenance.loop_stats["last_restore_s"] = round(time.perf_counter() - t0, 3)
        self.maintenance.phase = "running"
        resumed = await self._resume_clocks()
        self.delivery.recovered(restoring.again, delivered)
        self.fetches.reset()
        self.watermarks.reset()
        self.processor.new_incarnation(uuid.uuid4().hex[:12].encode())
        own.recovered()
        log.info(
            "state recovered: partitions %s, %d held candidates, %d stream clocks resumed, "
            "%d campaign rows, %d identity link rows",
            sorted(own.owned),
            restoring.held,
            resumed,
            campaigns,
            links,
        )
        self.maintenance.trim_heap("recovery")

    async def _resume_clocks(self) -> int:
        """Each owned input stream's frontier, from the metadata of the committed offset
        the consumer resumes at (see streams.worker.checkpoint). Without it a record read
        again after a crash would get a lower arrival frontier than in an uninterrupted
        run, and could see evidence an uninterrupted run calls late."""
        committed = await asyncio.to_thread(self.offsets.read, True)
        # A partition never committed has no offset for faust to seek back to after
        # recovery: a record fetched while the flow was still suspended would be skipped
        # for good. Start those from their beginning explicitly.
        consumer = self.app.consumer
        fresh = [
            tp
            for tp in consumer.assignment()
            if (tp.topic in self.inputs or tp.topic == self.reroute)
            and (tp.topic, tp.partition) not in committed
        ]
        if fresh:
            starts = await consumer.earliest_offsets(*fresh)
            for tp, offset in starts.items():
                if offset is not None:
                    await consumer.seek(tp, offset)
        n = 0
        owned = self.ownership.owned
        for (topic, p), (_, meta) in committed.items():
            if topic in self.inputs and p in owned:
                frontier = parse_frontier(meta)
                if frontier is not None:
                    self.engine.clock(p).resume(self.role_of[topic], frontier)
                    n += 1
        return n

    async def _on_revoked(self, sender: object, revoked: set[TP], **kwargs: object) -> None:
        self.ownership.revoking()
        self.maintenance.phase = "starting"  # a rebalance: loading new partitions is not "running"
        # The next owner restores from the changelog and publishes the outbox entries
        # not recorded as delivered: publish what is pending and record it first.
        await self.delivery.hand_over(self.batches.handling)
        self.checkpoints.forget((tp.topic, tp.partition) for tp in revoked)
        gone = {tp.partition for tp in revoked if tp.topic in self.inputs}
        self.ownership.revoked(gone)
        self.delivery.drop_partitions(gone)
        self.watermarks.drop(gone)
        self.store.forget(gone, self.ownership.partition_of)
        self.store.clear_cache()
        self.engine.drop_partitions(gone)

    async def _stop(self) -> None:
        """On a clean stop: no more records handled; the last decisions out, their
        delivery recorded and flushed."""
        self.batches.stopping.set()
        await self.delivery.final(self.batches.handling)
