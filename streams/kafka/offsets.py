"""The consumer group's committed offsets, with the metadata the worker commits them
with (its streams' frontiers). Blocking (kafka-python's admin client): call it in a
thread from asyncio code."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.errors import KafkaError

from streams.kafka.admin import admin_client
from streams.settings import Settings

log = logging.getLogger("trigger_sanity.worker")

RETRY_PAUSE_S = 1.0
"""Pause before asking again after a failure (a connection left over from before a
broker restart needs a new client)."""


class CommittedOffsets:
    """Reads the group's committed offsets; one admin client, replaced after a failure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: Any = None

    def read(self, strict: bool = False) -> dict[tuple[str, int], Any]:
        """(topic, partition) -> offset, or (offset, metadata) when ``strict``; then a
        failure raises after a few attempts (recovery must not guess a clock), otherwise
        it is logged and nothing is returned (the caller treats partitions as busy)."""
        attempts = 5 if strict else 1
        for attempt in range(attempts):
            try:
                if self._admin is None:
                    self._admin = admin_client(self.settings)
                offsets = self._admin.list_consumer_group_offsets(self.settings.app_id)
                break
            except KafkaError as exc:
                self.close()
                if attempt + 1 < attempts:
                    time.sleep(RETRY_PAUSE_S)  # in a worker thread: backing off
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

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._admin = None
