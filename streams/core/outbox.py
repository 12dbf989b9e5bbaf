"""The outbox: a decision's output records travel in the customer's state.

In the worker, a decision is rendered once, when it is made, and appended to the
state that records it (``CustomerState.outbox``), tagged with the publish cycle it
belongs to (its *generation*). The state is written back before the records are
sent, so a crash between the two loses nothing: recovery finds the entries newer
than the generation last known delivered and publishes them again, byte for byte.
Offline there is no outbox: the engine is built without one.

The engine only appends and drops delivered entries; which generation is current
and which is delivered is the delivery loop's business (``streams.worker.delivery``),
through the methods below, never by setting fields from outside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.core.outcomes import Output, Rendered
from streams.core.state import CustomerState


class Outbox:
    __slots__ = ("_render", "delivered", "generation")

    def __init__(self, render: Callable[[Output], Rendered]) -> None:
        self._render = render
        self.generation = 0  # the publish cycle new entries belong to
        self.delivered = -1  # every entry of this generation or older is delivered

    def add(self, state: CustomerState, outputs: Iterable[Output]) -> None:
        """Render ``outputs`` into the state's outbox, dropping delivered entries first."""
        self.drop_delivered(state, lazily=True)
        gen = self.generation
        for o in outputs:
            o.rendered = self._render(o)
            for role, key, value in o.rendered:
                state.outbox.append((gen, role, key.decode(), value.decode()))

    def drop_delivered(self, state: CustomerState, lazily: bool = False) -> None:
        """Forget entries known delivered (``lazily``: only when the oldest is)."""
        box = state.outbox
        if box and (not lazily or box[0][0] <= self.delivered):
            state.outbox = [e for e in box if e[0] > self.delivered]

    def next_cycle(self) -> int:
        """A publish cycle starts: what is in the outbox so far belongs to the returned
        generation, new entries to the next one."""
        gen = self.generation
        self.generation += 1
        return gen

    def delivered_up_to(self, generation: int) -> None:
        """Every entry of ``generation`` and older is known delivered."""
        self.delivered = max(self.delivered, generation)

    def resume(self, top: int, delivered: Iterable[int]) -> None:
        """After a recovery: new entries must be newer than ``top`` (the newest generation
        found in any outbox or recorded delivered), and only what every owned partition
        recorded delivered counts as delivered."""
        self.generation = max(self.generation, top + 1)
        self.delivered = min(delivered, default=-1)
