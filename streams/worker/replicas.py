"""The partitions' campaign gate replicas (``streams.core.gate``), kept in the customers
table: durable in the same changelog, and with exactly-once in the same transaction, as
the customer states and the re-route offsets they go with.

Each replica is one row under a key of its own partition (what it waits to let out,
what it holds, each source's promise) and one row per campaign (the book's counts,
trip and kill), so a batch writes only the campaigns it counted. Keys start with a
NUL byte, which no customer id carries, and hash (murmur2, like the customers) into
the replica's partition.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from streams.contract.partitioning import partition_for
from streams.core.engine import Engine
from streams.worker.table_store import GATE_PREFIX, TableStore

PIECE = 256 * 1024
"""Largest value written: a replica holding thousands of candidates of a tripped
campaign goes out in pieces (the broker's default record limit is 1 MiB)."""


class Replicas:
    def __init__(self, engine: Engine, store: TableStore, partitions: int) -> None:
        self.engine = engine
        self.store = store
        self.partitions = partitions
        self._heads: dict[int, bytes] = {}
        self._keys: dict[tuple[int, str], bytes] = {}
        self._piece_keys: dict[tuple[int, str], bytes] = {}
        # partition -> the head row's pieces as last written and the ones before: (version,
        # pieces); the older ones are deleted only at the write after, once a head naming
        # the newer ones has certainly landed before them
        self._pieces: dict[int, list[tuple[int, int]]] = {}

    def head_key(self, partition: int) -> bytes:
        key = self._heads.get(partition)
        if key is None:
            key = self._heads[partition] = landing(f"{GATE_PREFIX}{partition}", "", partition,
                                                    self.partitions)  # fmt: skip
        return key

    def campaign_key(self, partition: int, campaign: str) -> bytes:
        key = self._keys.get((partition, campaign))
        if key is None:
            prefix = f"{GATE_PREFIX}{partition}"
            key = self._keys[(partition, campaign)] = landing(
                prefix, ":" + campaign, partition, self.partitions
            )
        return key

    def save(self, partitions: Iterable[int]) -> int:
        """Write what changed of these partitions' replicas; gives the rows written."""
        n = 0
        if not self.engine.replicated:
            return n
        for p in partitions:
            rows = self.engine.replica_rows(p)
            if rows is None:
                continue
            head, campaigns = rows
            self._put_head(p, orjson.dumps(head))
            for campaign, row in campaigns:
                key = self.campaign_key(p, campaign)
                self.store.put_raw(key, None if row is None else orjson.dumps(row))
                if row is None:
                    self._keys.pop((p, campaign), None)
            n += 1 + len(campaigns)
        return n

    def piece_key(self, partition: int, version: int, i: int) -> bytes:
        """Piece ``i`` of version ``version`` of the head row: ``|`` where a campaign row
        has ``:``. Each version has keys of its own, so a head row is never read with
        pieces of another version (at-least-once writes back without transactions)."""
        name = f"|{version}-{i}"
        key = self._piece_keys.get((partition, name))
        if key is None:
            prefix = f"{GATE_PREFIX}{partition}"
            key = self._piece_keys[(partition, name)] = landing(
                prefix, name, partition, self.partitions
            )
        return key

    def _put_head(self, p: int, blob: bytes) -> None:
        """The head row, in pieces when large: the pieces first, the head naming them
        last (one partition, one producer: they land in that order)."""
        versions = self._pieces.setdefault(p, [])
        head = self.head_key(p)
        if len(blob) <= PIECE:
            self.store.put_raw(head, blob, last=True)
            versions.append((versions[-1][0] + 1 if versions else 0, 0))
        else:
            v = versions[-1][0] + 1 if versions else 0
            n = -(-len(blob) // PIECE)
            for i in range(n):
                self.store.put_raw(self.piece_key(p, v, i), blob[i * PIECE : (i + 1) * PIECE])
            self.store.put_raw(head, orjson.dumps({"pieces": n, "v": v}), last=True)
            versions.append((v, n))
        while len(versions) > 2:
            old, count = versions.pop(0)
            for i in range(count):
                self.store.put_raw(self.piece_key(p, old, i), None)

    def load(self, owned: Iterable[int]) -> int:
        """A recovery: each owned partition's replica from the table; gives how many
        campaigns were read back."""
        if not self.engine.replicated:
            return 0
        data = self.store.data
        n = 0
        for p in sorted(owned):
            head, campaigns = self._read(data, p)
            self.engine.load_replica(p, head, campaigns)
            n += len(campaigns)
        return n

    def _read(
        self, data: MutableMapping[bytes, bytes], partition: int
    ) -> tuple[list[Any] | None, list[tuple[str, list[Any]]]]:
        part = getattr(data, "part", None)
        keys: Iterable[bytes] = list(part(partition)) if part is not None else list(data)
        head_key = self.head_key(partition)
        prefix = f"{GATE_PREFIX}{partition}-".encode()
        raw = data.get(head_key)
        head = None if raw is None else orjson.loads(raw)
        keep = b""
        if isinstance(head, dict):
            n, v = int(head["pieces"]), int(head["v"])
            head = orjson.loads(b"".join(data[self.piece_key(partition, v, i)] for i in range(n)))
            self._pieces[partition] = [(v, n)]
            keep = f"|{v}-".encode()
        for key in keys:
            # pieces of another version (a crash between writing them and their head):
            # never read, deleted now
            if key.startswith(prefix) and b"|" in key and b":" not in key:
                if not keep or keep not in key:
                    self.store.put_raw(key, None)
        campaigns: list[tuple[str, list[Any]]] = []
        for key in keys:
            if key.startswith(prefix) and b":" in key:
                campaign = key.split(b":", 1)[1].decode("utf-8")
                self._keys[(partition, campaign)] = key
                campaigns.append((campaign, orjson.loads(data[key])))
        return head, campaigns


def landing(prefix: str, suffix: str, partition: int, partitions: int) -> bytes:
    """``prefix-N`` + ``suffix`` for the first N whose murmur2 lands in ``partition``."""
    i = 0
    while partition_for(f"{prefix}-{i}{suffix}", partitions) != partition:
        i += 1
    return f"{prefix}-{i}{suffix}".encode()
