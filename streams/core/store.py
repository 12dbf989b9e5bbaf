"""Where the engine keeps customer state: a protocol, and the dict the offline replay
and the unit tests use (the worker's store is a changelogged table,
``streams.worker.table_store``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from streams.core.candidate import Candidate
from streams.core.state import CustomerState


class StateStore(Protocol):
    """Where customer state lives: a dict offline, a changelogged faust table live."""

    def get(self, customer_id: str) -> CustomerState | None: ...
    def put(self, customer_id: str, state: CustomerState) -> None: ...
    def delete(self, customer_id: str) -> None: ...
    def keys(self) -> Iterable[str]: ...


Pending = tuple[str, list[tuple[int, str, int, int]], list[Any]]
"""A customer's id, held candidates (deadline, message id, seq, gate_at: 0 unless in a
campaign gate) and outbox entries."""


@runtime_checkable
class ListsPending(Protocol):
    """A store that can list what a restore needs of every customer without decoding
    whole states (the worker's table store reads it from the encoded bytes)."""

    def pending(self) -> Iterator[Pending]: ...


class MemoryStore:
    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, CustomerState] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        return self.data.get(customer_id)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.data[customer_id] = state

    def delete(self, customer_id: str) -> None:
        self.data.pop(customer_id, None)

    def keys(self) -> Iterable[str]:
        return list(self.data)


def held_of(
    store: StateStore, customer_id: str, seq: int
) -> tuple[CustomerState | None, Candidate | None]:
    """A customer's state and its held candidate ``seq`` (None where there is none)."""
    state = store.get(customer_id)
    if state is None:
        return None, None
    return state, next((c for c in state.held if c.seq == seq), None)
