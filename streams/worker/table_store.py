"""The engine's state store in the worker: customers' encoded states in the table's
memory, written back to the changelog in flushes.

Keys are customer ids as UTF-8 and values ``encoding.encode`` bytes: the changelog
then partitions exactly like the inputs (murmur2 of the key), and memory holds the
compact encoding, not Python objects.

A record's changes go to memory at once (reads see them) and to the changelog at the
next ``take_dirty`` flush, once per customer however many records touched it (as
Kafka Streams' caching store and quix-streams' checkpoints do): faust's one changelog
send per table write was most of the worker's cost. Offsets wait for the flush
(``Checkpoints.state_pending``).

No faust here: the store works on the mapping the table's memory store fills
(``streams.worker.changelog.PartitionedData``), which tests replace with a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from streams.contract.partitioning import partition_for
from streams.core.encoding import OUTBOX_SEP, decode, encode, pending_of, without_delivered
from streams.core.state import CustomerState
from streams.worker.checkpoint import Checkpoints

DELIVERED_PREFIX = "\x00delivered-"
DELIVERED_PREFIX_BYTES = DELIVERED_PREFIX.encode()
GATE_PREFIX = "\x00gate-"  # campaign gate replicas (streams.worker.replicas)
LINK_PREFIX = "\x00link-"  # identity links each partition heard (streams.worker.link_rows)
# keys that are no customer (shadows of linked customers' facts, "\x01...", are states)
INTERNAL = (DELIVERED_PREFIX_BYTES, GATE_PREFIX.encode(), LINK_PREFIX.encode())


def delivered_key(partition: int, partitions: int) -> str:
    """A table key that lands in ``partition`` (murmur2, like the customers), under which
    the newest publish generation known delivered for that partition is kept."""
    i = 0
    while partition_for(f"{DELIVERED_PREFIX}{i}", partitions) != partition:
        i += 1
    return f"{DELIVERED_PREFIX}{i}"


class TableStore:
    """The engine's ``StateStore`` over the table's raw bytes, written back in flushes."""

    def __init__(
        self,
        data: MutableMapping[bytes, bytes] | Callable[[], MutableMapping[bytes, bytes]],
        owns: Callable[[str], bool],
        checkpoints: Checkpoints,
        cache_size: int = 20_000,
    ) -> None:
        """``data``: the mapping, or how to get it once it exists (faust creates the
        table's store when the app starts, after the worker is built)."""
        if isinstance(data, MutableMapping):
            self._data: MutableMapping[bytes, bytes] | None = data
            self._source: Callable[[], MutableMapping[bytes, bytes]] | None = None
        else:
            self._data, self._source = None, data
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
        # written back with an outbox: dropped from memory once delivered
        self._boxed: set[bytes] = set()

    @property
    def data(self) -> MutableMapping[bytes, bytes]:
        found = self._data
        if found is None:
            assert self._source is not None
            found = self._data = self._source()
        return found

    # ------------------------------------------------------------ a record's unit of work

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

    def forget(self, gone: set[int], partition_of: Callable[[str], int]) -> None:
        """Partitions moved to another worker: changes of theirs not yet written back are
        dropped, never written into a changelog partition someone else now owns (the new
        owner reads the records again from the committed offsets)."""
        if gone and self._dirty:
            self._dirty = {
                k: v for k, v in self._dirty.items()
                if partition_of(k.decode("utf-8")) not in gone
            }  # fmt: skip

    def _set(self, key: bytes, value: bytes | None) -> None:
        data = self.data
        if value is not None:
            data[key] = value
        elif key in data:
            del data[key]
        self.checkpoints.state_pending()
        self._dirty[key] = value

    def put_raw(self, key: bytes, value: bytes | None, last: bool = False) -> None:
        """A row that is no customer's (``INTERNAL`` keys), written back like one (None:
        deleted). ``last``: written back after everything changed before it."""
        if last:
            self._dirty.pop(key, None)
        self._set(key, value)

    def take_dirty(self) -> dict[bytes, bytes | None]:
        """What the next flush writes; from now on changes wait for the flush after."""
        dirty, self._dirty = self._dirty, {}
        self._boxed.update(k for k, v in dirty.items() if v is not None and OUTBOX_SEP in v)
        return dirty

    def drop_delivered_outboxes(self, delivered: int) -> int:
        """Publish generations up to ``delivered`` are delivered: the customers written back
        with outboxes of those only keep them in the changelog (a restart publishes
        nothing of them again), not in memory, where they would stay until the customer's
        next record or sweep. Gives how many were dropped."""
        data, cache = self.data, self._cache
        left: set[bytes] = set()
        dropped = 0
        for key in self._boxed:
            raw = data.get(key)
            if raw is None:
                continue
            kept = without_delivered(raw, delivered)
            if kept is None:
                if OUTBOX_SEP in raw:
                    left.add(key)  # written since with entries still to publish
                continue
            data[key] = kept
            state = cache.get(key)
            if state is not None:
                state.outbox = []  # the cache holds exactly what the bytes say
            dropped += 1
        self._boxed = left
        return dropped

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    # ------------------------------------------------------------ StateStore

    def get(self, customer_id: str) -> CustomerState | None:
        key = customer_id.encode("utf-8")
        tx = self._tx
        if tx is None:
            # outside a record (sweep, restore): a fresh copy, the cache stays untouched
            data = self.data.get(key)
            return None if data is None else decode(data)
        if key in tx:
            return tx[key]
        seen = self._seen.get(key)
        if seen is None:
            seen = self._cache.get(key)
            if seen is None:
                data = self.data.get(key)
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

    # ------------------------------------------------------------ walks over every customer

    def snapshot_keys(self) -> None:
        """Take the key list the next ``keys()`` or ``pending()`` walks, now: a million
        keys take a noticeable time to copy, which a caller stepping under a time budget
        wants as a step of its own (and out of the collector's way, see
        ``Maintenance.frozen``)."""
        self._snapshot = self._key_snapshot()

    def drop_snapshot(self) -> None:
        self._snapshot = None

    def _key_snapshot(self) -> list[bytes]:
        """Every key now, taken at once (the table changes while a sweep walks it)."""
        taken, self._snapshot = self._snapshot, None
        if taken is not None:
            return taken
        return list(self.data)

    def pending(self) -> Iterator[tuple[str, list[tuple[int, str, int, int]], list[Any]]]:
        """Held candidates and outbox of each owned customer, read from the encoded
        states without decoding them whole (what ``Engine.restoring`` needs)."""
        data = self.data
        for key in self._key_snapshot():
            if key.startswith(INTERNAL):
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
            if raw.startswith(INTERNAL):
                continue
            key = raw.decode("utf-8")
            if self.owns(key):  # asked when visited: ownership may change during a sweep
                yield key
