"""``trigger-sanity state``: what the worker knows of one customer, from its web page."""

from __future__ import annotations

import argparse

import orjson

from streams.cli.common import Subparsers, fail, settings
from streams.cli.worker_client import NoAnswer, WorkerClient, WorkerRefused


def add_state(sub: Subparsers) -> None:
    st = sub.add_parser(
        "state",
        help="what the worker knows of one customer",
        description="Asks the worker's web server (TRIGGER_SANITY_WEB_HOST:PORT, default "
        "127.0.0.1:6066; it binds that address only, so customer data stays on it) for the "
        "customer's state: purchases, returns, sessions, consents, orders, sends, held "
        "candidates. Exit 1 when the worker does not know the customer or does not own "
        "their partition (it says which), 2 when no worker answers.",
    )
    st.add_argument("customer_id")
    st.add_argument("--url", help="the worker's web address (default from the settings)")
    st.set_defaults(fn=cmd_state)


def cmd_state(args: argparse.Namespace) -> int:
    client = WorkerClient.of(settings(), args.url)
    try:
        state = client.customer(args.customer_id)
    except WorkerRefused as exc:
        fail(str(exc))
        return 1
    except NoAnswer as exc:
        fail(
            f"the worker's web server at {client.base_url} did not answer ({exc}): is a "
            "worker running with TRIGGER_SANITY_WEB_ENABLED=true, and is this its "
            "TRIGGER_SANITY_WEB_HOST/PORT (or give --url)?"
        )
        return 2
    print(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())
    return 0
