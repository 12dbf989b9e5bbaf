"""What every command adapter shares: the settings, argparse types, output files, and
the one-line error format, so that each command reads and fails the same way."""

from __future__ import annotations

import argparse
import gc
import gzip
import sys
import time
from typing import IO, TypeAlias

from streams.settings import Settings, load_settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def settings() -> Settings:
    """Read at the command's run, not at import: ``--help`` works with a broken config;
    one line per invalid field (exit 2), not a traceback."""
    return load_settings()


def kafka_settings() -> Settings:
    """The settings of a command that talks to Kafka, once one bootstrap server has
    answered with them: a mismatched listener, an untrusted certificate or a wrong
    password fails here within seconds, in one line that names it, instead of as a
    hang or a traceback deep in a client."""
    from streams.kafka.probe import check_broker

    conf = load_settings()
    check_broker(conf)
    return conf


def tune_collector(conf: Settings) -> None:
    """The cyclic collector's youngest-generation threshold, for the process that decides
    (the worker, an offline replay): almost everything they allocate is freed by reference
    counting, and at Python's default a pass ran about every record (and every tenth, a
    pass over older objects too). A process-wide setting, so it is set here, where the
    command starts, and nowhere in the library."""
    if conf.gc_threshold:
        gc.set_threshold(conf.gc_threshold, *gc.get_threshold()[1:])


def now_ms() -> int:
    return int(time.time() * 1000)


def fail(message: str) -> None:
    """One line on stderr, prefixed like argparse's own errors; the caller picks the exit."""
    print(f"trigger-sanity: {message}", file=sys.stderr)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def open_out(path: str) -> IO[bytes]:
    """``-`` is stdout, so decisions can be piped; ``.gz`` is compressed."""
    if path == "-":
        return sys.stdout.buffer
    if path.endswith(".gz"):
        return gzip.open(path, "wb")  # type: ignore[return-value]
    return open(path, "wb")
