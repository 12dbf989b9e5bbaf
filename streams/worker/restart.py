"""The worker restarting itself in place after a transaction failed for a passing cause
(the broker restarting or unreachable for longer than the transaction timeout): its
memory is then ahead of what Kafka holds, and recovering means starting again from the
committed state. Same process id, arguments and environment (``os.execv``), after a
backoff that doubles with each restart in a row, so that a supervisor sees one worker
that rode out the outage; after ``MAX_RESTARTS`` in a row it leaves the restart to the
supervisor (exit 1)."""

from __future__ import annotations

import os
import sys
import time

RESTARTS_ENV = "TRIGGER_SANITY_WORKER_RESTARTS"
"""How many times in a row this worker restarted itself (set by ``restart``)."""

MAX_RESTARTS = 10
"""Restarts in a row, each within a minute of the one before, before it gives up."""


def restart_plan(previous: str | None, now: float) -> tuple[int, float] | None:
    """(restarts in a row before this one, backoff in seconds) from the last restart's
    ``<count>:<epoch seconds>``, or None when there were ``MAX_RESTARTS`` in a row. A
    restart more than a minute after the last one starts a new row."""
    count, _, since = (previous or "0:0").partition(":")
    n = int(count) if count.isdigit() else 0
    last = float(since) if since.replace(".", "", 1).isdigit() else 0.0
    if now - last > 60:
        n = 0
    if n >= MAX_RESTARTS:
        return None
    return n, min(30.0, 0.5 * 2**n)


def restart(reason: BaseException) -> None:
    """A transaction failed for a passing cause (the broker restarting, unreachable for
    longer than the transaction timeout): the worker's memory is ahead of what Kafka
    holds, and recovering means starting again from the committed state. It does so in
    place (same process id, same arguments and environment), after a backoff that
    doubles with each restart in a row, so that an operator's supervisor sees one
    worker that rode out the outage. After ``MAX_RESTARTS`` in a row it exits 1 and
    leaves the restart to the supervisor."""
    plan = restart_plan(os.environ.get(RESTARTS_ENV), time.time())
    if plan is None:
        print(f"worker stopped: {reason} ({MAX_RESTARTS} restarts in a row; not restarting)",
              flush=True)  # fmt: skip
        return
    n, delay = plan
    print(
        f"worker restarting from the committed state in {delay:.1f} s "
        f"(restart {n + 1} in a row): {reason}",
        flush=True,
    )
    time.sleep(delay)  # the restart's backoff, not a wait for some other event
    os.environ[RESTARTS_ENV] = f"{n + 1}:{time.time():.0f}"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streams.cli", *sys.argv[1:]])
