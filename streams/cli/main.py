"""``trigger-sanity``: the worker, topic admin, replay, policy and ops commands.

Configuration comes from ``TRIGGER_SANITY_*`` environment variables (see the
README); every command's ``--help`` says what it does and what it needs. Each
command group lives in its own module, which adds its parser and turns arguments
into a call to a service function; this module puts them in order and turns the
errors a user can cause into one line and an exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NoBrokersAvailable

from streams import __version__
from streams.cli.campaign import add_campaign
from streams.cli.capture import add_capture
from streams.cli.decisions import add_explain, add_inspect
from streams.cli.demo import add_demo
from streams.cli.policy import add_policy
from streams.cli.release import add_release
from streams.cli.replay import add_generate, add_replay
from streams.cli.state import add_state
from streams.cli.stats import add_stats
from streams.cli.topics import add_topics
from streams.cli.verify import add_verify
from streams.cli.worker import add_worker
from streams.errors import TriggerSanityError

COMMANDS = (
    add_worker,
    add_topics,
    add_replay,
    add_policy,
    add_campaign,
    add_inspect,
    add_explain,
    add_release,
    add_state,
    add_stats,
    add_capture,
    add_generate,
    add_verify,
    add_demo,
)
"""In the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trigger-sanity",
        description="Stops contradictory marketing triggers before they reach a customer. "
        "Configuration: TRIGGER_SANITY_* environment variables or trigger-sanity.toml "
        "(see README).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TriggerSanityError as exc:
        print(f"trigger-sanity: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        # The broker went away after the command's first connection (streams.kafka.probe
        # words the mismatches found before), or refused a request: one line, no traceback.
        servers = os.environ.get("TRIGGER_SANITY_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        if isinstance(exc, NoBrokersAvailable | KafkaTimeoutError | KafkaConnectionError):
            said = "did not answer: start a broker (make kafka-start) or set "
            said += "TRIGGER_SANITY_BOOTSTRAP_SERVERS"
        else:
            said = f"refused a request: {str(exc).strip() or 'no reason given'}"
        print(f"trigger-sanity: Kafka at {servers} {said} ({type(exc).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; say nothing more (and not at exit either)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
