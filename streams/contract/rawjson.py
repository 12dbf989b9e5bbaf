"""Editing JSON text in place: add or replace one member, leave every other byte alone.

The send queue must carry the candidate exactly as automation wrote it, plus
the ``sanity`` block: integers beyond 64 bits, ``1.10`` written as ``1.10``,
key order and unknown fields all survive. Parsing and re-encoding cannot
promise that (orjson turns a 30-digit integer into a float, the standard
library rewrites number formats), so outputs splice bytes instead. The
scanner trusts its input to be valid JSON: every caller has validated it.
"""

from __future__ import annotations

import re

import orjson

_WS = b" \t\r\n"


def _skip_ws(data: bytes, i: int) -> int:
    n = len(data)
    while i < n and data[i] in _WS:
        i += 1
    return i


def _string_end(data: bytes, i: int) -> int:
    """``data[i]`` is an opening quote; index just past the closing one. Jumps from quote
    to quote (``bytes.find`` runs in C); a quote after an odd run of backslashes is
    escaped."""
    find = data.find
    j = i + 1
    while True:
        q = find(b'"', j)
        if q < 0:
            raise ValueError("unterminated JSON string")
        k = q
        while data[k - 1] == 0x5C:  # count the backslashes right before the quote
            k -= 1
        if (q - k) % 2 == 0:
            return q + 1
        j = q + 1


_STRUCTURE = re.compile(rb'["{}\[\]]')


def _value_end(data: bytes, i: int) -> int:
    c = data[i]
    if c == 0x22:
        return _string_end(data, i)
    if c in b"{[":
        depth = 0
        search = _STRUCTURE.search
        while True:
            m = search(data, i)
            if m is None:
                raise ValueError("unterminated JSON value")
            i = m.start()
            c = data[i]
            if c == 0x22:
                i = _string_end(data, i)
                continue
            if c in b"{[":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    n = len(data)
    while i < n and data[i] not in b",}] \t\r\n":
        i += 1
    return i


def members(data: bytes, start: int = 0) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the object at ``start``."""
    i = _skip_ws(data, start)
    if data[i] != 0x7B:
        raise ValueError("not a JSON object")
    out: list[tuple[str, int, int]] = []
    i = _skip_ws(data, i + 1)
    if data[i] == 0x7D:
        return out
    while True:
        k_end = _string_end(data, i)
        key = orjson.loads(data[i:k_end])
        i = _skip_ws(data, k_end)
        i = _skip_ws(data, i + 1)  # past ':'
        v_end = _value_end(data, i)
        out.append((key, i, v_end))
        i = _skip_ws(data, v_end)
        if data[i] == 0x7D:
            return out
        i = _skip_ws(data, i + 1)  # past ','


def span(data: bytes, key: str, start: int = 0) -> tuple[int, int] | None:
    """Where the value of the member ``key`` of the object at ``start`` is (last wins)."""
    found = None
    for k, a, b in members(data, start):
        if k == key:
            found = (a, b)
    return found


def with_member(data: bytes, key: str, value: bytes) -> bytes:
    """``data`` (a JSON object) with ``key`` set to the JSON text ``value``."""
    at = span(data, key)
    if at is not None:
        return data[: at[0]] + value + data[at[1] :]
    end = len(data.rstrip(_WS)) - 1  # the closing brace
    head = data[:end].rstrip(_WS)
    sep = b"" if head.endswith(b"{") else b","
    return head + sep + orjson.dumps(key) + b":" + value + data[end:]


def replace_in(data: bytes, path: tuple[str, ...], value: bytes) -> bytes:
    """``data`` with the member at ``path`` (nested objects) replaced by ``value``; unchanged
    when the path does not exist."""
    start = 0
    for i, key in enumerate(path):
        at = span(data, key, start)
        if at is None:
            return data
        if i == len(path) - 1:
            return data[: at[0]] + value + data[at[1] :]
        if data[at[0]] != 0x7B:
            return data
        start = at[0]
    return data
