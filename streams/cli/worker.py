"""``trigger-sanity worker``: the stream processor.

The only command that imports faust and the worker, inside the command, so that
every other command starts without paying for them.
"""

from __future__ import annotations

import argparse
import logging

from streams import __version__
from streams.cli.common import Subparsers, kafka_settings
from streams.core.policy import load_policy


def add_worker(sub: Subparsers) -> None:
    w = sub.add_parser(
        "worker",
        help="run the stream processor (faust worker)",
        description="Consume the input topics, decide every candidate, write "
        "send-queue / suppressed / dead-letter / late-evidence. Stops on SIGTERM/SIGINT.",
    )
    w.add_argument(
        "--policy",
        help="policy file (default: TRIGGER_SANITY_POLICY_FILE or the contract defaults)",
    )
    w.set_defaults(fn=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    import faust

    from streams.kafka.admin import check_inputs
    from streams.logs import logging_config
    from streams.worker.worker import Worker

    conf = kafka_settings()
    policy = load_policy(args.policy or conf.policy_file)
    partitions = check_inputs(conf)
    if partitions != conf.partitions:
        print(
            f"input topics have {partitions} partitions (TRIGGER_SANITY_PARTITIONS says "
            f"{conf.partitions}): using {partitions}",
            flush=True,
        )
        conf = conf.model_copy(update={"partitions": partitions})
    import os

    worker = Worker(conf, policy, after_outage=RESTARTS_ENV in os.environ)
    print(
        f"trigger-sanity {__version__} worker: app {conf.app_id} "
        f"on {conf.bootstrap_servers}, "
        f"policy {policy.version}, inputs {', '.join(conf.topics.inputs)}",
        flush=True,
    )
    fw = faust.Worker(
        worker.app,
        loglevel=conf.log_level.lower(),
        quiet=True,
        logging_config=logging_config(conf.log_format, conf.log_level),
    )
    # faust's terminal spinner sets the root logger to DEBUG (at WARNING and above) so that
    # every library debug line spins it: thousands of log records a second for nothing.
    fw.spinner = None
    # kafka-python (admin lookups) logs every connection at INFO: not news for an operator.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        fw.execute_from_commandline()
    except SystemExit as exc:
        reason = worker.delivery.restart_reason()
        if exc.code not in (0, None) and reason is not None:
            restart(reason)
        raise
    return 0


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
    import os
    import sys
    import time

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
