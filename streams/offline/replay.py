"""``trigger-sanity replay --offline``: a history file through the decision core, in one
process (``streams.offline.decide``) or several (``streams.offline.jobs``), with the same
output either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from streams.core.campaigns import Order
from streams.core.outcomes import Output
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.offline.decide import ReplaySummary, decide_file, first_pass, output_row, tally
from streams.offline.jobs import replay_jobs

__all__ = ["ReplaySummary", "replay_offline"]


def replay_offline(
    path: str | Path,
    policy: Policy,
    out: IO[bytes] | None,
    progress: Callable[[int], None] | None = None,
    late_out: IO[bytes] | None = None,
    partitions: int = 1,
    sweep_every: int = 50_000,
    history: PolicyHistory | None = None,
    on_output: Callable[[Output], None] | None = None,
    jobs: int = 1,
    orders: Iterable[Order] = (),
) -> ReplaySummary:
    """``history``: versions applied live (its base must be ``policy``). ``on_output``
    sees every decision, late finding and failure (the report and compare tools).
    ``jobs`` > 1: the partitions are decided by that many processes
    (``streams.offline.jobs``), with the same output, byte for byte; not with ``[blast]``
    on, whose campaigns span every partition (one process then). ``orders``: campaign
    commands from ops (``campaign history --json``)."""
    if jobs > 1 and partitions > 1 and not policy.blast.enabled:
        if on_output is not None:
            raise ValueError("on_output needs the decisions in this process: jobs=1")
        return replay_jobs(
            path, policy, out, progress, late_out, partitions, jobs, history, sweep_every
        )
    summary = ReplaySummary()
    started = time.perf_counter()

    def emit(_line: int, outputs: list[Output]) -> None:
        for o in outputs:
            if on_output is not None:
                on_output(o)
            kind, value = output_row(o)
            tally(summary, out, late_out, kind, value)

    ends, _ = first_pass(path, partitions)
    decide_file(path, policy, partitions, ends, summary, emit, progress, sweep_every, history,
                orders=orders)  # fmt: skip
    summary.seconds = time.perf_counter() - started
    return summary
