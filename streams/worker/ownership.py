"""Which input partitions this worker owns now, and whether a piece of async work that
started earlier may still act on them.

Every await is a place where a rebalance can move partitions to another worker.
Work that awaits (a publish cycle, an idle check, a sweep step, a handed-over batch)
takes ``epoch`` before its first await and asks ``still(epoch)`` before it acts on
what it learned: a revocation or a recovery since then bumps the epoch, and the
partitions may be someone else's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.contract.partitioning import partition_for


class Ownership:
    __slots__ = ("_rebalancing", "epoch", "owned", "partitions", "ready")

    def __init__(self, partitions: int, rebalancing: Callable[[], bool]) -> None:
        self.partitions = partitions
        self._rebalancing = rebalancing
        self.owned: set[int] = set()
        self.epoch = 0  # bumped on every revocation and recovery
        self.ready = False  # state recovered, clocks resumed: records may be decided

    def partition_of(self, customer_id: str) -> int:
        return partition_for(customer_id, self.partitions)

    def owns(self, customer_id: str) -> bool:
        return self.partition_of(customer_id) in self.owned

    def recovering(self, owned: Iterable[int]) -> None:
        """A recovery starts with these partitions: earlier work must not act any more."""
        self.epoch += 1
        self.owned = set(owned)

    def recovered(self) -> None:
        self.ready = True

    def revoking(self) -> None:
        """A rebalance takes partitions away: nothing is decided until the next recovery."""
        self.ready = False

    def revoked(self, gone: Iterable[int]) -> None:
        self.epoch += 1
        self.owned.difference_update(gone)

    @property
    def active(self) -> bool:
        """Ready and not in the middle of a rebalance."""
        return self.ready and not self._rebalancing()

    def still(self, epoch: int) -> bool:
        """Work begun at ``epoch`` may still act: no revocation or recovery since, and the
        worker is ready and not rebalancing."""
        return epoch == self.epoch and self.active
