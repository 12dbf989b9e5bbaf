"""History files: JSON Lines (optionally gzip), one topic record per line.

``{"topic": "purchases", "value": {...}, "key": "c-42", "timestamp": "..."}``;
``key`` defaults to the value's ``customer_id``, ``timestamp`` (the record
time) to the event time. A line that is not such a record is reported with
its line number and skipped; it never stops a replay.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from streams.contract import rawjson
from streams.core.clock import to_ms
from streams.errors import HistoryError

EVENT_TIME_FIELD = {
    "purchases": "occurred_at",
    "returns": "occurred_at",
    "sessions": "occurred_at",
    "consents": "occurred_at",
    "identities": "occurred_at",
    "outbound": "created_at",
}
INPUT_TOPICS = tuple(EVENT_TIME_FIELD)
_LINE_FIELDS = frozenset({"topic", "value", "key", "timestamp"})


@dataclass(slots=True)
class HistoryRecord:
    line_no: int
    topic: str  # the contract's input topic name (role)
    key: bytes | None
    value: bytes  # the value's JSON text exactly as written in the line: what a producer sends
    event_ms: int | None  # None when the value has no usable event time
    record_ms: int | None  # the explicit record time, if the line had one
    customer_id: str | None  # the value's customer_id, if it has one (its partition)


@dataclass(slots=True)
class BadLine:
    line_no: int
    error: str


def open_text(path: str | Path) -> IO[bytes]:
    p = Path(path)
    try:
        fh: IO[bytes] = open(p, "rb")
    except OSError as exc:
        raise HistoryError(f"cannot open history file {p}: {exc.strerror}") from exc
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def parse_time(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return to_ms(dt)


def parse_line(line_no: int, line: bytes, full: bool = True) -> HistoryRecord | BadLine | None:
    """One line -> a record, a reason it is bad, or None for a blank line. ``full=False``
    checks the line just as strictly but leaves ``value`` empty and ``event_ms`` None: what
    a pass that only needs each record's topic and customer pays."""
    if not line.strip():
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # A line whose value is JSON that not every reader takes (NaN, 1e400): read the
        # line leniently so the value goes to the decoder, which refuses it with the same
        # reason the worker gives, as an unreadable record of its topic
        obj = _lenient(line)
        if obj is None:
            return BadLine(line_no, f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return BadLine(line_no, "expected a JSON object with 'topic' and 'value'")
    topic = obj.get("topic")
    if topic not in EVENT_TIME_FIELD:
        return BadLine(line_no, f"topic must be one of {', '.join(INPUT_TOPICS)}, got {topic!r}")
    if "value" not in obj:
        return BadLine(line_no, "missing 'value'")
    value = obj["value"]
    unknown = None if _LINE_FIELDS.issuperset(obj) else set(obj) - _LINE_FIELDS
    if unknown:
        return BadLine(line_no, f"unknown fields {sorted(unknown)}")
    key = obj.get("key")
    if key is None and isinstance(value, dict) and isinstance(value.get("customer_id"), str):
        key = value["customer_id"]
    if key is not None and not isinstance(key, str):
        return BadLine(line_no, "'key' must be a string")
    record_ms = None
    if obj.get("timestamp") is not None:
        record_ms = parse_time(obj["timestamp"])
        if record_ms is None:
            return BadLine(line_no, "'timestamp' must be an RFC 3339 time with an offset")
    event_ms = None
    cid = None
    if isinstance(value, dict):
        if full:
            event_ms = parse_time(value.get(EVENT_TIME_FIELD[topic]))
        if isinstance(value.get("customer_id"), str):
            cid = value["customer_id"]
    # The value's own bytes, not a re-encoding: a 30-digit integer or "1.10" must reach
    # the topic (and the send queue) as written.
    return HistoryRecord(
        line_no,
        topic,
        None if key is None else key.encode("utf-8"),
        _raw_value(line, value) if full else b"",
        event_ms,
        record_ms,
        cid,
    )


def _lenient(line: bytes) -> Any:
    """The line as Python's ``json`` reads it (NaN, Infinity and huge numbers taken), or
    None when even that cannot."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def _raw_value(line: bytes, value: Any) -> bytes:
    """The bytes of the line's top-level ``value``. Fast path: a line written compactly
    by orjson (ours, and most tools') holds ``"value":`` followed by exactly what orjson
    writes for the parsed value, found with one C-speed search. That match can only be the
    top-level member: inside a string every quote is escaped, and a nested ``"value"``
    member cannot serialize to the whole value it is part of. Anything else (spaces,
    ``1.10``, huge integers) is cut out by the scanner."""
    try:
        enc = orjson.dumps(value)
    except orjson.JSONEncodeError:
        enc = b""
    if enc and line.find(b'"value":' + enc) >= 0:
        return enc
    at = rawjson.span(line, "value")
    return line[at[0] : at[1]] if at is not None else orjson.dumps(value)


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    with open_text(path) as fh:
        yield from enumerate(io.BufferedReader(fh) if isinstance(fh, gzip.GzipFile) else fh, 1)


def read_history(path: str | Path, full: bool = True) -> Iterator[HistoryRecord | BadLine]:
    for i, line in iter_lines(path):
        rec = parse_line(i, line, full)
        if rec is not None:
            yield rec


def write_history(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write records (``{"topic", "value", ...}``) as a history file (gzip for ``.gz``)."""
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    p = Path(path)
    if p.suffix == ".gz":
        p.write_bytes(gzip.compress(data))
    else:
        p.write_bytes(data)
