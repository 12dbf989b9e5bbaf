"""JSON every consumer reads alike, or the one-line reason (with its byte offset) it is not.

The send queue forwards a candidate byte for byte, so what trigger-sanity accepts is
what every consumer downstream must read. Parsers disagree on exactly the inputs
refused here: ``NaN`` and ``Infinity`` (not JSON; Python's ``json`` takes them, most
others refuse), numbers beyond the double range (``1e400`` becomes infinity in one
reader and an error in another), a key twice in one object (first wins in some
readers, last in others: the customer decided on may not be the one a reader sees),
invalid UTF-8 and a byte-order mark. Ids with control characters are refused too:
they end up in log lines and tables an operator reads.

The check costs one orjson parse (which refuses the first five itself) and, for
duplicate keys, a count of the keys it parsed against the key tokens in the bytes;
naming the problem is only done when there is one. ``parse`` hands the parsed value
on, so a reader of the record (``fast_decode``) need not parse it a second time.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

BOM = b"\xef\xbb\xbf"

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?', re.S)
"""Every string token, left to right; group 1 is set when it is an object's key."""

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters that would break a log line or a table: C0 and C1 controls, DEL, and the
Unicode line and paragraph separators."""


def parse(raw: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` when ``raw`` is JSON every reader takes alike, else ``(None, why)``:
    the value is the parse the check was made on, for a caller that reads the record."""
    if raw.startswith(BOM):
        return None, "starts with a UTF-8 byte-order mark (bytes 0-2): JSON text has none"
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, _syntax(raw, exc)
    if not _as_written(parsed, raw):
        keys = _keys(parsed)
        if keys and not _same_keys(raw, keys):
            return None, _duplicate(raw)
    return parsed, None


def _as_written(parsed: Any, raw: bytes) -> bool:
    """Are ``raw`` exactly the bytes orjson writes for ``parsed``? Then they hold no key
    twice: a duplicate is a member the parse dropped, so writing the parse again would
    come out shorter. Records written compactly by orjson (ours, and most tools') skip
    counting keys. orjson writes at most 254 levels deep (it reads 1024): deeper, count."""
    if type(parsed) is not dict:
        return False
    try:
        return orjson.dumps(parsed) == raw
    except orjson.JSONEncodeError:
        return False


def problem(raw: bytes) -> str | None:
    """Why ``raw`` is not JSON every reader takes alike, or None when it is."""
    return parse(raw)[1]


_LOOSE_KEY = re.compile(rb'"\s+:')


def _same_keys(raw: bytes, keys: int) -> bool:
    """Do the bytes hold exactly the ``keys`` the parse kept (no key twice in an object)?
    Fast for compact JSON without escaped quotes, where every key ends in ``":`` and
    nothing else does; anything else is counted token by token."""
    if b'\\"' not in raw and _LOOSE_KEY.search(raw) is None:
        return raw.count(b'":') == keys
    return _key_tokens(raw) == keys


def control_in(field: str, value: str) -> str | None:
    """Why an id field with a control character is refused, or None."""
    found = CONTROL.search(value)
    if found is None:
        return None
    return (
        f"{field} holds a control character (U+{ord(found.group()):04X} at index "
        f"{found.start()}): ids end up in log lines and tables"
    )


def _keys(value: Any) -> int:
    """How many keys the parsed value's objects hold, all levels. A stack, not recursion:
    orjson nests up to 1024 deep, past Python's recursion limit, and such a record must
    be refused by its model, not crash the reader. orjson builds exact dicts and lists,
    so ``type(...) is`` suffices."""
    if type(value) is not dict and type(value) is not list:
        return 0
    n = 0
    todo: list[Any] = [value]
    while todo:
        node = todo.pop()
        if type(node) is dict:
            n += len(node)
            node = node.values()
        for v in node:
            if type(v) is dict or type(v) is list:
                todo.append(v)
    return n


def _key_tokens(raw: bytes) -> int:
    return sum(1 for m in _STRING.finditer(raw) if m.group(1) is not None)


def _syntax(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start}"
    at = len(text[: exc.pos].encode("utf-8"))
    reason = exc.msg.split(": line ")[0]
    ahead = raw[at : at + 9].lstrip(b"-")
    if ahead.startswith((b"NaN", b"Infinity")):
        reason = "NaN and Infinity are not JSON"
    elif "infinity" in reason:
        reason = "a number beyond the range of a double"
    return f"not valid JSON at byte {at}: {reason}"


def _duplicate(raw: bytes) -> str:
    """Name the first key that appears twice in one object, and where."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _v in items:
            if k in seen and not found:
                found.append(k)
            seen.add(k)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except RecursionError:  # nested deeper than the standard library reads: left unnamed
        pass
    key = found[0] if found else "?"
    token = json.dumps(key, ensure_ascii=False).encode("utf-8")
    hits = [m.start() for m in _STRING.finditer(raw) if m.group(1) and m.group(0).startswith(token)]
    where = f" at byte {hits[1]}" if len(hits) > 1 else ""
    return f"key {key!r} appears twice in one object{where}: readers disagree on which counts"
