"""The worker's reader of the policy topic: versions applied live reach the engine.

It reads the whole (compacted, one-partition) topic at start, before the
worker decides anything, then polls for new versions every
``policy_poll_interval``. A version only adds to the history; which one
decides a candidate is fixed by the candidate's ``created_at`` (see
``streams.core.policy_history``), so reading a version a second later changes no
decision as long as it arrives before candidates created after its effective
time are due: ``policy apply`` puts the effective time a minute ahead for that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from streams.core.policy_history import PolicyHistory, PolicyRecord

log = logging.getLogger("trigger_sanity.policy")


class PolicyFeed:
    what = "policy topic"
    without = "no live policy versions"

    def __init__(
        self,
        topic: str,
        history: PolicyHistory | None,
        client_kwargs: dict[str, Any],
        poll_interval: float,
    ) -> None:
        self.topic = topic
        self.history = history
        self.client_kwargs = client_kwargs
        self.poll_interval = poll_interval
        self.loaded = asyncio.Event()  # the topic was read to its end once
        self.read = 0
        self._missing_logged = False

    def take(self, value: bytes | None) -> None:
        if value is None or self.history is None:
            return
        self.read += 1
        try:
            rec = PolicyRecord.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            log.error("unreadable record on policy topic %s: %s", self.topic, exc)
            return
        rejected = len(self.history.rejected)
        if self.history.add(rec):
            log.warning(
                "policy %s (seq %d, applied by %s) decides candidates created from %s on",
                rec.version,
                rec.seq,
                rec.applied_by,
                rec.effective_at,
            )
        elif len(self.history.rejected) > rejected:
            log.error(
                "policy %s (seq %d) not applied: %s",
                rec.version,
                rec.seq,
                self.history.rejected[-1][1],
            )

    async def read_once(self, timeout: float) -> None:
        """Read the topic to its end now, with a consumer of its own, and set ``loaded``:
        recovery calls this (faust starts app tasks, ``run`` among them, only after
        recovery). Versions read again later by ``run`` are taken once."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client_kwargs)
        await consumer.start()
        try:
            async with asyncio.timeout(timeout):
                tp = TopicPartition(self.topic, 0)
                await consumer._client.force_metadata_update()
                if not await self._exists(consumer):
                    self.loaded.set()
                    return
                consumer.assign([tp])
                consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
                end = (await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                        for rec in records:
                            self.take(rec.value)
                self.loaded.set()
        finally:
            await consumer.stop()

    async def _exists(self, consumer: AIOKafkaConsumer) -> bool:
        topics = await consumer.topics()
        if self.topic in topics:
            return True
        if not self._missing_logged:
            log.warning(
                "%s %s does not exist: %s until it is created (trigger-sanity topics create)",
                self.what,
                self.topic,
                self.without,
            )
            self._missing_logged = True
        return False

    async def run(self, should_stop: Any) -> None:
        """Until ``should_stop()``; ``loaded`` is set once the topic was read to its end
        (at once when the topic does not exist: there is nothing to wait for)."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.client_kwargs)
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            while not should_stop() and not await self._exists(consumer):
                self.loaded.set()
                await asyncio.sleep(self.poll_interval * 10)  # pacing the re-check
            consumer.assign([tp])
            start = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, start)
            while not should_stop():
                end = (await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    batches = await consumer.getmany(tp, timeout_ms=500)
                    for records in batches.values():
                        for rec in records:
                            self.take(rec.value)
                self.loaded.set()
                await asyncio.sleep(self.poll_interval)  # pacing the polls
        finally:
            await consumer.stop()
