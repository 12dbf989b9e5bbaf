"""Offline replay on several cores: ``trigger-sanity replay --offline --jobs N``.

The emulated partitions share nothing: a customer's records, state and held
candidates are in one partition, and each partition has its own stream clock. So
each of N processes decides its share of the partitions (partition ``p`` goes to
process ``p % N``), reading the whole file but parsing only its own lines, and the
parent merges what they decided back into the order one process gives: by the line
that produced each output, then the order it came in; the final flush by partition.
The output files and the summary are the same, byte for byte, as with ``--jobs 1``
(``tests/unit/offline/test_jobs.py``).

A first pass in the parent notes each line's partition (one byte per line, two beyond
254 partitions) and where each stream ends; the processes inherit it. They write
their outputs to temporary files, tagged with (line, sequence), so memory does not
grow with the file. Process 0 also takes the lines that belong to no partition (bad
lines, records without a customer), so each is reported once.
"""

from __future__ import annotations

import heapq
import multiprocessing
import multiprocessing.connection
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from streams.contract.partitioning import partition_for
from streams.core.outcomes import LateFinding, Output, Refused
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.offline.decide import (
    FLUSHED,
    ReplaySummary,
    decide_file,
    first_pass,
    no_record,
    output_row,
    tally,
    unkeyed,
)


def _share(
    k: int,
    jobs: int,
    path: str,
    policy: Policy,
    partitions: int,
    history: PolicyHistory | None,
    sweep_every: int,
    ends: dict[tuple[str, int], int],
    parts: array[int],
    tags: str,
    done: Any,
) -> None:
    """Process ``k``'s partitions: outputs to ``tags`` as ``[line, seq, kind, value]``
    lines in the order they came, then its counts and unreadable lines to
    ``tags + ".summary"``; ``done[k]``: its records so far (shared memory, for the
    parent's progress line)."""
    marks = {p for p in range(partitions) if p % jobs == k}
    if k == 0:
        marks |= {unkeyed(partitions), no_record(partitions)}
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
                    cid = (
                        o.customer_id if isinstance(o, LateFinding)
                        else o.link.alias if isinstance(o, Refused)
                        else o.candidate.customer_id
                    )  # fmt: skip
                    at = flush_base + partition_for(cid, partitions)
                fh.write(orjson.dumps([at, seq, *output_row(o)]) + b"\n")
                seq += 1

        decide_file(
            path, policy, partitions, ends, summary, emit, progress, sweep_every, history,
            marks, parts,
        )  # fmt: skip
    progress(summary.records)
    Path(tags + ".summary").write_bytes(
        orjson.dumps(
            {
                "records": summary.records,
                "candidates": summary.candidates,
                "late_unchecked": summary.late_unchecked,
                "bad_lines": summary.bad_lines,
                "unreadable": summary.unreadable,
            }
        )
    )


def _main(k: int, *args: Any) -> None:
    """A process's body: its share, or its error written where the parent reads it
    (``args`` as ``_share`` takes them after ``k``; the tags file is the next to last)."""
    try:
        _share(k, *args)
    except BaseException:
        Path(args[-2] + ".error").write_text(traceback.format_exc())
        raise


def _rows(tags: Path) -> Iterator[list[Any]]:
    with open(tags, "rb") as fh:
        for line in fh:
            yield orjson.loads(line)


class ShareFailed(RuntimeError):
    """A process of a parallel replay failed; the message carries its traceback."""


def _run_shares(
    ctx: Any, jobs: int, args: tuple[Any, ...], files: list[Path],
    progress: Callable[[int], None] | None,
) -> None:  # fmt: skip
    """Start the processes (with fork they inherit ``args``: nothing is pickled), report
    progress while they run, and stop them all at the first failure."""
    done = ctx.Array("q", jobs)
    procs = [
        ctx.Process(target=_main, args=(k, *args, str(files[k]), done), daemon=True)
        for k in range(jobs)
    ]
    for proc in procs:
        proc.start()
    try:
        running = {proc.sentinel: proc for proc in procs}
        reported = -1
        while running:
            for sentinel in multiprocessing.connection.wait(list(running), timeout=2.0):
                proc = running.pop(sentinel)
                proc.join()
                if proc.exitcode != 0:
                    k = procs.index(proc)
                    err = Path(str(files[k]) + ".error")
                    why = err.read_text() if err.exists() else f"exit code {proc.exitcode}"
                    raise ShareFailed(f"replay process {k} of {jobs} failed:\n{why}")
            total = sum(done)
            if progress is not None and total != reported:
                progress(total)
                reported = total
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def replay_jobs(
    path: str | Path,
    policy: Policy,
    out: IO[bytes] | None,
    progress: Callable[[int], None] | None,
    late_out: IO[bytes] | None,
    partitions: int,
    jobs: int,
    history: PolicyHistory | None,
    sweep_every: int = 50_000,
) -> ReplaySummary:
    jobs = max(1, min(jobs, partitions))
    summary = ReplaySummary()
    started = time.perf_counter()
    ends, parts = first_pass(path, partitions, per_line=True)
    assert parts is not None
    if any(t == "identities" for t, _p in ends):
        # identity links share facts between partitions: one process decides them all
        def emit(_line: int, outputs: list[Output]) -> None:
            for o in outputs:
                kind, value = output_row(o)
                tally(summary, out, late_out, kind, value)

        decide_file(path, policy, partitions, ends, summary, emit, progress, sweep_every,
                    history)  # fmt: skip
        summary.seconds = time.perf_counter() - started
        return summary
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with tempfile.TemporaryDirectory(prefix="replay-jobs-") as tmp:
        files = [Path(tmp) / f"{k}.tags" for k in range(jobs)]
        args = (jobs, str(path), policy, partitions, history, sweep_every, ends, parts)
        _run_shares(ctx, jobs, args, files, progress)
        for f in files:
            share = orjson.loads(Path(str(f) + ".summary").read_bytes())
            summary.records += share["records"]
            summary.candidates += share["candidates"]
            summary.late_unchecked += share["late_unchecked"]
            summary.bad_lines += [(ln, err) for ln, err in share["bad_lines"]]
            summary.unreadable += [(ln, t, err) for ln, t, err in share["unreadable"]]
        summary.unreadable.sort(key=lambda u: u[0])
        for _at, _seq, kind, value in heapq.merge(
            *(_rows(f) for f in files), key=lambda r: (r[0], r[1])
        ):
            tally(summary, out, late_out, kind, value)
    summary.seconds = time.perf_counter() - started
    return summary
