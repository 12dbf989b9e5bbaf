"""The identity links each partition has heard (``streams.core.linking``), kept in the
customers table: durable in the same changelog, and with exactly-once in the same
transaction, as the re-route offsets they were read at.

Every partition keeps every link (it decides which of its customers' facts go where
from the whole book), one row per link under a key of its own partition, plus a head
row: how many links it read itself and how many of each other partition's it has
heard. Keys start with a NUL byte, which no customer id carries, and hash (murmur2,
like the customers) into their partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from streams.core.engine import Engine
from streams.worker.replicas import landing
from streams.worker.table_store import LINK_PREFIX, TableStore


class LinkRows:
    def __init__(self, engine: Engine, store: TableStore, partitions: int) -> None:
        self.engine = engine
        self.store = store
        self.partitions = partitions
        self._keys: dict[tuple[int, str], bytes] = {}

    def key(self, partition: int, name: str) -> bytes:
        """The head row (``name`` empty) or a link's row (``:`` and its event id)."""
        key = self._keys.get((partition, name))
        if key is None:
            key = self._keys[(partition, name)] = landing(
                f"{LINK_PREFIX}{partition}", name, partition, self.partitions
            )
        return key

    def save(self, partitions: Iterable[int]) -> int:
        """Write the link rows of these partitions that changed; gives how many."""
        n = 0
        for p in partitions:
            part = self.engine.part(p)
            if not part.link_rows and not part.link_seq and not part.done:
                continue
            rows, head = self.engine.link_rows(p)
            for eid, row in rows.items():
                self.store.put_raw(self.key(p, ":" + eid), orjson.dumps(row))
                self._keys.pop((p, ":" + eid), None)  # written once or twice: no need to keep
            if rows:
                self.store.put_raw(self.key(p, ""), orjson.dumps(head))
            n += len(rows)
        return n

    def load(self, owned: Iterable[int]) -> int:
        """A recovery: the links of each owned partition back into the book."""
        data = self.store.data
        part_of = getattr(data, "part", None)
        n = 0
        for p in sorted(owned):
            keys: Iterable[bytes] = list(part_of(p)) if part_of is not None else list(data)
            prefix = f"{LINK_PREFIX}{p}-".encode()
            rows: list[list[Any]] = []
            for key in keys:
                if key.startswith(prefix) and b":" in key:
                    rows.append(orjson.loads(data[key]))
            raw = data.get(self.key(p, ""))
            head = None if raw is None else orjson.loads(raw)
            self.engine.load_links(p, rows, head)
            n += len(rows)
        return n
