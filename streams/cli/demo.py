"""``trigger-sanity demo``: the built-in demo on a running broker."""

from __future__ import annotations

import argparse
import sys

from streams.cli.common import Subparsers, kafka_settings


def add_demo(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo",
        help="run the worker on a built-in demo history and print decisions",
        description="Creates fresh demo topics, starts a worker, produces the demo "
        "history and prints every decision with its rule and reason. Needs a broker "
        "(`make demo` starts one).",
    )
    d.add_argument("--timeout", type=float, default=120.0)
    d.set_defaults(fn=cmd_demo)


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.ops.demo import run_demo

    worker = [sys.executable, "-m", "streams.cli", "worker"]
    return 0 if run_demo(kafka_settings(), args.timeout, _say, worker) else 1
