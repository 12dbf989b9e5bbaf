"""What the processor asks the shell to write: plain records, and the headers of the
internal re-route topic (forwarded records and progress markers)."""

from __future__ import annotations

from dataclasses import dataclass

H_ROLE = "ts-role"
H_SOURCE = "ts-src"  # "<topic>:<partition>:<offset>" the record was first read at
H_ARRIVAL = "ts-arr"  # frontier of its source stream when it was read there
H_MARKER = "ts-marker"
H_COUNTS = "ts-counts"  # campaign gate entries and promise of one partition (``core.gate``)
H_INCARNATION = "ts-inc"  # which run of the forwarding worker sent it (in-process markers)
H_OPEN = "ts-open"
"""On a record ``trigger-sanity replay`` produced: ``<replay id>;<roles>``, the input
roles of its Kafka partition that have records still to come after it in the file
("3f9a1c;purchases,outbound"). A stream announced open is not idle, however caught up
it is, until its own last record (whose header leaves it out) is read; after that, no
announcement of the same replay opens it again (one read later from a slower stream
is older news). A replay at full speed is so read as the offline replay reads the file,
where a stream is idle only once its last record is read."""


def open_header(replay_id: str, roles: list[str]) -> bytes:
    return f"{replay_id};{','.join(roles)}".encode()


def parse_open(value: bytes) -> tuple[str, frozenset[str]]:
    """(replay id, roles) of an ``ts-open`` header (unknown roles are the caller's to
    drop; a header without an id counts as one replay)."""
    text = value.decode("ascii", "replace")
    rid, _, roles = text.rpartition(";")
    return rid, frozenset(r for r in roles.split(",") if r)


@dataclass(slots=True, frozen=True)
class OutRecord:
    """A record to produce. ``role`` is an output topic role (``send_queue``...) or
    ``reroute`` (the internal re-route topic, with ``partition`` and ``headers``)."""

    role: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    origin: int | None = None
    """The partition index whose reading caused the write (re-routed copies, progress
    markers, dead letters): with exactly-once it goes in that partition's transaction.
    Decisions go in their customer's partition's, with the state that records them."""


def source_partition(headers: dict[str, bytes] | None) -> int | None:
    """The partition a forwarded record was first read from (its ``ts-src`` header)."""
    src = None if headers is None else headers.get(H_SOURCE)
    if src is None:
        return None
    try:
        return int(src.rsplit(b":", 2)[1])
    except (IndexError, ValueError):
        return None
