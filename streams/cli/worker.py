"""``trigger-sanity worker``: the stream processor.

The only command that imports faust and the worker, inside the command, so that
every other command starts without paying for them.
"""

from __future__ import annotations

import argparse
import logging

from streams import __version__
from streams.cli.common import Subparsers, kafka_settings, tune_collector
from streams.core.policy import load_policy
from streams.settings import Settings


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
    import os

    import faust

    from streams.kafka.admin import check_inputs
    from streams.logs import logging_config
    from streams.worker.restart import RESTARTS_ENV, restart
    from streams.worker.worker import Worker

    if RESTARTS_ENV in os.environ:
        conf = _broker_back()  # restarted after an outage: the broker may still be away
    else:
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
    tune_collector(conf)
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
            restart(reason)  # returns only when it gives up
        raise
    return 0


BROKER_WAIT = 300.0
"""Seconds a worker restarted after an outage waits for the broker before it gives up."""


def _broker_back() -> Settings:
    """The settings once the broker answers again, waiting up to ``BROKER_WAIT`` (a
    restart after an outage starts while the broker may still be away; a fresh start
    fails at once instead, naming what does not answer)."""
    import time

    from streams.kafka.probe import BrokerError, check_broker
    from streams.settings import load_settings

    conf = load_settings()
    deadline = time.monotonic() + BROKER_WAIT
    told = False
    while True:
        try:
            check_broker(conf)
            return conf
        except BrokerError as exc:
            if time.monotonic() > deadline:
                raise
            if not told:
                print(f"waiting for the broker to answer again: {exc}", flush=True)
                told = True
            time.sleep(1.0)  # polling the broker until it is back, bounded by the deadline
