"""The identity links each partition has heard (``streams.core.linking``), kept in the
customers table: durable in the same changelog, and with exactly-once in the same
transaction, as the re-route offsets they were read at.

Every partition keeps every link (it decides which of its customers' facts go where
from the whole book): the rows that changed in a flush are written as one chunk under
a key of its own partition (a backlog hears links by the hundred per flush), plus a
head row: how many links it read itself, how many of each other partition's it has
heard, and the next chunk's number. Keys start with a NUL byte, which no customer id
carries, and hash (murmur2, like the customers) into their partition.
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
        self._heads: dict[int, bytes] = {}
        self._next: dict[int, int] = {}  # partition -> number of its next chunk

    def key(self, partition: int, name: str) -> bytes:
        """The head row (``name`` empty) or a chunk (``:`` and its number)."""
        if name:
            return landing(f"{LINK_PREFIX}{partition}", name, partition, self.partitions)
        key = self._heads.get(partition)
        if key is None:
            key = self._heads[partition] = landing(
                f"{LINK_PREFIX}{partition}", "", partition, self.partitions
            )
        return key

    def save(self, partitions: Iterable[int]) -> int:
        """Write the link rows of these partitions that changed since the last save, as one
        chunk each (a later chunk's row of a link wins), and the head naming the next
        chunk, in the same flush; gives how many rows."""
        n = 0
        for p in partitions:
            part = self.engine.part(p)
            if not part.link_rows:
                continue
            rows, head = self.engine.link_rows(p)
            chunk = self._next.get(p, 0)
            self.store.put_raw(self.key(p, f":{chunk}"), orjson.dumps(list(rows.values())))
            self._next[p] = chunk + 1
            self.store.put_raw(self.key(p, ""), orjson.dumps([*head, chunk + 1]))
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
            chunks: list[tuple[int, list[list[Any]]]] = []
            for key in keys:
                if key.startswith(prefix) and b":" in key:
                    chunks.append((int(key.rsplit(b":", 1)[1]), orjson.loads(data[key])))
            rows: dict[str, list[Any]] = {}
            for _no, chunk in sorted(chunks, key=lambda c: c[0]):
                for row in chunk:
                    rows[str(row[0])] = row
            raw = data.get(self.key(p, ""))
            head = None if raw is None else orjson.loads(raw)
            self._next[p] = int(head[2]) if head is not None and len(head) > 2 else len(chunks)
            self.engine.load_links(p, list(rows.values()), head)
            n += len(rows)
        return n
