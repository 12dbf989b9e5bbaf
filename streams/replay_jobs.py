"""Offline replay on several cores: ``trigger-sanity replay --offline --jobs N``.

The emulated partitions share nothing: a customer's records, state and held
candidates are in one partition, and each partition has its own stream clock. So
each of N processes decides its share of the partitions (partition ``p`` goes to
process ``p % N``), reading the whole file but parsing only its own lines, and the
parent merges what they decided back into the order one process gives: by the line
that produced each output, then the order it came in; the final flush by partition.
The output files and the summary are the same, byte for byte, as with ``--jobs 1``
(``tests/unit/test_replay_jobs.py``).

A first pass in the parent notes each line's partition (one byte per line, two beyond
253 partitions) and where each stream ends; the processes inherit it. They write
their outputs to temporary files, tagged with (line, sequence), so memory does not
grow with the file. Process 0 also takes the lines that belong to no partition (bad
lines, records without a customer), so each is reported once.
"""

from __future__ import annotations

import heapq
import multiprocessing
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

import orjson

from streams.engine import Decided, LateFinding, Output
from streams.outputs import offline_line
from streams.partitioning import partition_for
from streams.policy import Policy
from streams.policy_history import PolicyHistory
from streams.replay import (
    FLUSHED,
    NO_RECORD,
    UNKEYED,
    ReplaySummary,
    decide_file,
    first_pass,
    late_line,
)

_DECIDED, _LATE, _FAILED = 0, 1, 2


def _share(
    k: int,
    jobs: int,
    path: str,
    policy: Policy,
    partitions: int,
    history: PolicyHistory | None,
    ends: dict[tuple[str, int], int],
    parts: array[int],
    tags: str,
    done: Any,
) -> dict[str, Any]:
    """Process ``k``'s partitions: outputs to ``tags`` as ``[line, seq, kind, value]``
    lines in the order they came; returns its counts and unreadable lines. ``done[k]``:
    its records so far (a list shared through a multiprocessing manager, for the
    parent's progress line)."""
    marks = {p for p in range(partitions) if p % jobs == k}
    if k == 0:
        marks |= {UNKEYED, NO_RECORD}
    summary = ReplaySummary()
    flush_base = len(parts)  # after every line: the final flush, ordered by partition
    seq = 0

    def progress(records: int) -> None:
        done[k] = records

    with open(tags, "wb") as fh:

        def emit(line: int, outputs: list[Output]) -> None:
            nonlocal seq
            for o in outputs:
                at = line
                if line == FLUSHED:
                    cid = o.customer_id if isinstance(o, LateFinding) else o.candidate.customer_id
                    at = flush_base + partition_for(cid, partitions)
                if isinstance(o, Decided):
                    row: list[Any] = [at, seq, _DECIDED, offline_line(o)]
                elif isinstance(o, LateFinding):
                    row = [at, seq, _LATE, late_line(o)]
                else:
                    row = [at, seq, _FAILED, [o.candidate.message_id, o.error]]
                fh.write(orjson.dumps(row) + b"\n")
                seq += 1

        decide_file(
            path, policy, partitions, ends, summary, emit, progress, 10_000, history, marks, parts
        )
    progress(summary.records)
    return {
        "records": summary.records,
        "candidates": summary.candidates,
        "bad_lines": summary.bad_lines,
        "unreadable": summary.unreadable,
    }


def _rows(tags: Path) -> Iterator[list[Any]]:
    with open(tags, "rb") as fh:
        for line in fh:
            yield orjson.loads(line)


def replay_jobs(
    path: str | Path,
    policy: Policy,
    out: IO[bytes] | None,
    progress: Callable[[int], None] | None,
    late_out: IO[bytes] | None,
    partitions: int,
    jobs: int,
    history: PolicyHistory | None,
) -> ReplaySummary:
    jobs = max(1, min(jobs, partitions))
    summary = ReplaySummary()
    started = time.perf_counter()
    ends, parts = first_pass(path, partitions, per_line=True)
    assert parts is not None
    # fork: the processes inherit the first pass instead of receiving a pickled copy
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with tempfile.TemporaryDirectory(prefix="replay-jobs-") as tmp:
        files = [Path(tmp) / f"{k}.tags" for k in range(jobs)]
        with ctx.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            done = manager.list([0] * jobs)
            futures = [
                pool.submit(
                    _share,
                    k,
                    jobs,
                    str(path),
                    policy,
                    partitions,
                    history,
                    ends,
                    parts,
                    str(files[k]),
                    done,
                )
                for k in range(jobs)
            ]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=2.0, return_when=FIRST_EXCEPTION)
                if progress is not None:
                    progress(sum(done))
                for f in finished:
                    f.result()  # a process's error is raised here, with its traceback
            shares = [f.result() for f in futures]
        for share in shares:
            summary.records += share["records"]
            summary.candidates += share["candidates"]
            summary.bad_lines += [(ln, err) for ln, err in share["bad_lines"]]
            summary.unreadable += [(ln, t, err) for ln, t, err in share["unreadable"]]
        summary.unreadable.sort(key=lambda u: u[0])
        for _at, _seq, kind, value in heapq.merge(
            *(_rows(f) for f in files), key=lambda r: (r[0], r[1])
        ):
            if kind == _DECIDED:
                summary.actions[value["action"]] += 1
                if value["rule"]:
                    summary.rules[value["rule"]] += 1
                if out is not None:
                    out.write(orjson.dumps(value) + b"\n")
            elif kind == _LATE:
                summary.late += 1
                if late_out is not None:
                    late_out.write(orjson.dumps(value) + b"\n")
            else:
                summary.failed.append((value[0], value[1]))
    summary.seconds = time.perf_counter() - started
    return summary
