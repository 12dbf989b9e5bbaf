"""A restore in steps (``Engine.restoring``): the deadline heaps rebuilt from the held
candidates in the store, and the outbox entries not known delivered collected to be
published again; a caller with a time budget walks it one customer at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from streams.core.store import ListsPending, Pending, StateStore

if TYPE_CHECKING:
    from streams.core.engine import Engine


class Restoring:
    """A restore in steps: ``walk`` yields after each customer; ``held`` and ``again``
    hold the totals once it is exhausted."""

    def __init__(
        self,
        engine: Engine,
        partition_of: Callable[[str], int],
        delivered: Callable[[int], int] | None,
    ) -> None:
        self.held = 0
        self.again: list[tuple[str, bytes, bytes]] = []
        self.walk = self._walk(engine, partition_of, delivered)

    def _walk(
        self,
        engine: Engine,
        partition_of: Callable[[str], int],
        delivered: Callable[[int], int] | None,
    ) -> Iterator[None]:
        box = engine.outbox
        top = -1 if box is None else box.generation
        store = engine.store
        # A store that can list what restore needs without decoding whole states is asked
        # for just that; any other is read state by state.
        rows = store.pending() if isinstance(store, ListsPending) else _pending_of(store)
        for cid, held, outbox in rows:
            p = partition_of(cid)
            self.held += engine._restore_one(cid, held, p)
            if outbox and delivered is not None:
                done = delivered(p)
                for gen, role, key, value in outbox:
                    top = max(top, gen + 1)
                    if gen > done:
                        self.again.append((role, key.encode(), value.encode()))
            yield None
        if box is not None:
            box.generation = top


def _pending_of(store: StateStore) -> Iterator[Pending]:
    for cid in store.keys():
        state = store.get(cid)
        if state is not None:
            yield (
                cid,
                [(c.deadline, c.message_id, c.seq, c.gate_at) for c in state.held],
                state.outbox,
            )
