"""The faust pieces the worker is built from: the App, its changelogged table, and the
one mapping from our settings onto faust's configuration.

faust does what it is good at here (the consumer group, assignment and rebalances,
changelog topics and recovery, the web server); the records themselves go through the
batch shell (``streams.kafka.batch_consumer``) and the worker's own delivery.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from streams.kafka.batch_consumer import ShellApp, ShellHooks
from streams.settings import Settings
from streams.worker.changelog import BulkLoadedStore
from streams.worker.checkpoint import Checkpoints
from streams.worker.snapshot import LocalSnapshot

log = logging.getLogger("trigger_sanity.worker")


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
        # what one fetch hands the worker (streams.kafka.batch_consumer): one batch
        "broker_max_poll_records": settings.batch_size,
    }
    ctx = settings.ssl_context()
    if settings.sasl_mechanism:
        conf["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=ctx,  # SASL_SSL with one, SASL_PLAINTEXT without
        )
    elif ctx is not None:
        conf["broker_credentials"] = faust.SSLCredentials(ctx)
    return conf


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Lifecycle:
    """What the app runs around faust's own start and stop.

    ``before_stop``: work to finish before the consumer stops (the last decisions out,
    their delivery recorded) while tables can still be written. ``stop_within``: a
    deadline for the whole stop: with the broker gone, faust's producer flush waits for
    ever, and a stopping worker must be gone within the session timeout (its partitions
    are someone else's by then). Leaving early is safe: nothing is committed before the
    writes it depends on, so it is a crash that loses nothing. ``early_tasks``: started
    with the app, before its tables recover (faust starts ``app.task``s only once
    recovery is done, and the stall probe must see the load and the restore too), on
    every start."""

    __slots__ = ("before_stop", "early_tasks", "overdue", "stop_within")

    def __init__(
        self,
        before_stop: Callable[[], Awaitable[None]] | None = None,
        stop_within: float | None = None,
        early_tasks: tuple[Callable[[], Awaitable[None]], ...] = (),
    ) -> None:
        self.before_stop = before_stop
        self.stop_within = stop_within
        # run by the watchdog before it exits the process (the worker restarts itself
        # there when the stop follows a passing failure)
        self.overdue: Callable[[], None] | None = None
        self.early_tasks = early_tasks


class WorkerApp(ShellApp):
    """faust's App with the batch shell and the worker's ``Lifecycle``."""

    def __init__(self, id: str, *, shell: ShellHooks, lifecycle: Lifecycle, **options: Any) -> None:
        self.lifecycle = lifecycle
        super().__init__(id, shell=shell, **options)

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.lifecycle.early_tasks:
            self.add_future(task())

    async def on_stop(self) -> None:
        within = self.lifecycle.stop_within
        if within is not None:
            watchdog = threading.Timer(within, _stop_overdue, (within, self.lifecycle.overdue))
            watchdog.daemon = True
            watchdog.start()
        if self.lifecycle.before_stop is not None:
            await self.lifecycle.before_stop()
        await super().on_stop()


def _stop_overdue(seconds: float, overdue: Callable[[], None] | None = None) -> None:
    log.error(
        "stopping took more than %.1f s (broker unreachable?); exiting now. Nothing is lost: "
        "what was not published or committed is done after the restart",
        seconds,
    )
    logging.shutdown()
    if overdue is not None:
        overdue()  # may not return (the worker restarts itself)
    os._exit(1)


class DurableTable(faust.Table):
    """faust's Table over our memory store (loaded from the changelog in bulk, split by
    partition, optionally with a local RocksDB copy), with every changelog write faust
    makes itself handed to the checkpoint ledger: an input offset is committed only
    once the state its record wrote is acknowledged."""

    def __init__(
        self,
        app: faust.App,
        *,
        checkpoints: Checkpoints,
        client_kwargs: dict[str, Any],
        snapshot_factory: Callable[[str, int], LocalSnapshot] | None = None,
        before_load: Callable[[list[int]], Awaitable[None]] | None = None,
        kept_end: Callable[[int], int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.checkpoints = checkpoints
        # with transactions: where this worker's last commit left a changelog partition
        self.kept_end = kept_end
        # run with every assignment's partitions before their changelog is read
        self.before_load = before_load
        self.client_kwargs = client_kwargs
        # makes the rocksdb:// local copy for a changelog topic and partition count
        self.snapshot_factory = snapshot_factory
        super().__init__(app, **kwargs)

    def _new_store_by_url(self, url: Any) -> Any:
        """The memory store loads its changelog in bulk (see streams.worker.changelog)."""
        if not str(url).startswith("memory:"):
            return super()._new_store_by_url(url)
        partitions = self.partitions or 1
        snapshot = None
        if self.snapshot_factory is not None:
            snapshot = self.snapshot_factory(self.changelog_topic.get_topic_name(), partitions)
        return BulkLoadedStore(
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
            client_kwargs=self.client_kwargs,
            partitions=partitions,
            snapshot=snapshot,
            before_load=self.before_load,
            kept_end=self.kept_end,
        )

    @property
    def memory(self) -> BulkLoadedStore:
        """The store (faust creates it at start); its ``data`` is split by partition."""
        store = self.data
        if not isinstance(store, BulkLoadedStore):
            raise TypeError(f"the customers table has a {type(store).__name__} store")
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
        self.checkpoints.track(fut)
        store = self.data
        if isinstance(store, BulkLoadedStore) and store.snapshot is not None:
            # the rocksdb:// copy must hold every changelog record; eager partitioning
            # (faust's send_changelog): the partition is known now
            store.snapshot.on_sent(key, value, fut, fut.message.partition)
        return fut
