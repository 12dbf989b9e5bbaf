"""A customer's state as changelog bytes: a compact orjson array, and back.

Format 5 (written): times as offsets from one base, enums as their index in the
vocabulary's tuples, a send's content key rebuilt rather than stored; the outbox, when
there is one, after the array: a newline (which compact JSON never contains), the
newest generation in it, a space, and its entries as JSON. Once that generation is
delivered the outbox is dead weight, and ``without_delivered`` drops it by slicing
the bytes, so a worker does not carry every recent customer's output records in
memory until the next sweep. Formats 2 to 4, written by earlier releases, are still
read. The held candidates and the outbox can be read without decoding the rest
(``pending_of``): what a restore needs of every customer.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.core.candidate import Candidate, content_key
from streams.core.state import (
    NEVER,
    ConsentFact,
    CustomerState,
    Epoch,
    Items,
    OrderFact,
    PurchaseFact,
    ReturnFact,
    SentFact,
    SessionFact,
)
from streams.core.vocabulary import ACTIONS, CATEGORIES, CHANNELS, TRIGGERS

FORMAT_VERSION = 5
# 2: decided ids and sent messages without arrival frontiers; 3: absolute times, strings;
# 4: times as offsets from one base, codes for enums, sends' content keys rebuilt;
# 5: as 4, the outbox after the array (row 13 empty)
READABLE_FORMATS = (2, 3, 4, 5)
OUTBOX_SEP = b"\n"


def _sent_row(s: SentFact) -> list[Any]:
    return [
        s.message_id,
        s.created_at,
        s.deadline,
        s.seq,
        s.trigger,
        s.channel,
        s.category,
        s.content,
        s.skus,
        s.cart_updated_at,
        s.order_id,
        s.action,
        s.rule,
        _a(s.arr),
    ]


def _sent(r: list[Any]) -> SentFact:
    m, c, d, q, tr, ch, cat, ct, sk, cu, o, a, rule, arr = r if len(r) == 14 else [*r, None]
    skus = None if sk is None else tuple(sk)
    return SentFact(m, c, d, q, tr, ch, cat, ct, skus, cu, o, a, rule, _n(arr))


def _a(arr: int) -> int | None:
    return None if arr == NEVER else arr


def _n(arr: int | None) -> int:
    return NEVER if arr is None else arr


# Format 4: what makes a state small. Times are offsets from one base (the first
# epoch's start) instead of 13-digit epoch milliseconds; an arrival frontier and a
# record time are offsets from the fact's own time (usually 0 or small); trigger,
# channel, category and action are indexes; a send's content key is rebuilt from its
# trigger, channel, SKUs and payload hash; a decided id that repeats a send's times is
# the id alone. The held candidates and the outbox keep format 3's rows: a restore
# reads them (``pending_of``) without decoding the rest.
_TRIGGERS = TRIGGERS
_CHANNELS = CHANNELS
_CATEGORIES = CATEGORIES
_ACTIONS = ACTIONS


def _code(value: str, table: tuple[str, ...]) -> int | str:
    try:
        return table.index(value)
    except ValueError:
        return value  # not in the table (a newer contract): kept as written


def _uncode(value: int | str, table: tuple[str, ...]) -> str:
    return table[value] if isinstance(value, int) else value


def _ago(t: int, arr: int) -> int | None:
    """An arrival frontier as its distance below the fact's time."""
    return None if arr == NEVER else t - arr


def _back(t: int, ago: int | None) -> int:
    return NEVER if ago is None else t - ago


def _sent4(s: SentFact, b: int) -> list[Any]:
    phash = s.content.rpartition("|")[2]
    content: str = (
        phash if content_key(s.trigger, s.channel, s.skus, phash) == s.content else s.content
    )
    return [
        s.message_id,
        s.created_at - b,
        s.deadline - s.created_at,
        s.seq,
        _code(s.trigger, _TRIGGERS),
        _code(s.channel, _CHANNELS),
        _code(s.category, _CATEGORIES),
        content,
        s.skus,
        None if s.cart_updated_at is None else s.created_at - s.cart_updated_at,
        s.order_id,
        _code(s.action, _ACTIONS),
        s.rule,
        _ago(s.created_at, s.arr),
    ]


def _unsent4(r: list[Any], b: int) -> SentFact:
    m, c, d, q, tr, ch, cat, ct, sk, cu, o, a, rule, arr = r
    c += b
    trigger, channel = _uncode(tr, _TRIGGERS), _uncode(ch, _CHANNELS)
    skus = None if sk is None else tuple(sk)
    content = ct if "|" in ct else content_key(trigger, channel, skus, ct)
    return SentFact(
        m,
        c,
        c + d,
        q,
        trigger,
        channel,
        _uncode(cat, _CATEGORIES),
        content,
        skus,
        None if cu is None else c - cu,
        o,
        _uncode(a, _ACTIONS),
        rule,
        _back(c, arr),
    )


def encode(state: CustomerState) -> bytes:
    row = _encode_row(state)
    box = state.outbox
    if not box:
        return row
    top = max(e[0] for e in box)
    return b"%s\n%d %s" % (row, top, orjson.dumps(box))


def without_delivered(data: bytes, delivered: int) -> bytes | None:
    """``data`` without its outbox, if every entry in it is of a generation up to
    ``delivered``; None when there is no outbox, or some of it is still to publish."""
    i = data.find(OUTBOX_SEP)
    if i < 0:
        return None
    j = data.index(b" ", i)
    if int(data[i + 1 : j]) > delivered:
        return None
    return data[:i]


def _split(data: bytes) -> tuple[bytes, list[Any] | None]:
    """(the array, the outbox written after it, if any)."""
    i = data.find(OUTBOX_SEP)
    if i < 0:
        return data, None
    return data[:i], orjson.loads(data[data.index(b" ", i) + 1 :])


def _encode_row(state: CustomerState) -> bytes:
    b = state.epochs[0].start if state.epochs else 0
    sends = {s.message_id: s for s in (*state.sent, *state.suppressed)}
    decided: list[list[Any]] = []
    for k, (c, d, q, a) in state.decided.items():
        s = sends.get(k)
        if s is not None and (s.created_at, s.deadline, s.seq, s.arr) == (c, d, q, a):
            decided.append([k])
        else:
            decided.append([k, c - b, d - c, q, _ago(c, a)])
    return orjson.dumps(
        [
            FORMAT_VERSION,
            [[p.event_id, p.t - b, p.order_id, p.items, _ago(p.t, p.arr), p.rt - p.t]
             for p in state.purchases],
            [[r.event_id, r.t - b, r.order_id, r.items, _ago(r.t, r.arr), r.rt - r.t]
             for r in state.returns],
            [[s.event_id, s.t - b, _ago(s.t, s.arr), s.rt - s.t] for s in state.sessions],
            [[c.event_id, c.t - b, _code(c.channel, _CHANNELS), c.withdrawn, _ago(c.t, c.arr),
              c.rt - c.t] for c in state.consents],
            [
                [
                    o.order_id,
                    None
                    if o.purchase is None
                    else [o.purchase[0], o.purchase[1] - b, _ago(o.purchase[1], o.purchase[2])],
                    o.items,
                    [[e, t - b, _ago(t, a), i] for e, t, a, i in o.returns],
                ]
                for o in state.orders.values()
            ],
            [_sent4(s, b) for s in state.sent],
            [_sent4(s, b) for s in state.suppressed],
            decided,
            [c.to_row() for c in state.held],
            [
                [
                    e.start - b,
                    e.end - e.start,
                    None
                    if e.first_purchase is None
                    else [e.first_purchase[0], e.first_purchase[1] - b,
                          _ago(e.first_purchase[1], e.first_purchase[2])],
                    e.pruned_sessions,
                ]
                for e in state.epochs
            ],
            state.nseq,
            {k: [o, t] for k, (o, t) in state.applied.items()},
            [],
            b,
            [[t - b, z, _ago(t, a)] for t, z, a in state.zones],
        ]
    )  # fmt: skip


def _decode_v4(row: list[Any]) -> CustomerState:
    b = row[14]
    sent = [_unsent4(r, b) for r in row[6]]
    suppressed = [_unsent4(r, b) for r in row[7]]
    sends = {s.message_id: s for s in (*sent, *suppressed)}
    decided: dict[str, tuple[int, int, int, int]] = {}
    for r in row[8]:
        if len(r) == 1:
            s = sends[r[0]]
            decided[r[0]] = (s.created_at, s.deadline, s.seq, s.arr)
        else:
            c = r[1] + b
            decided[r[0]] = (c, c + r[2], r[3], _back(c, r[4]))

    def fp(x: list[Any] | None) -> tuple[str, int, int] | None:
        if x is None:
            return None
        t = x[1] + b
        return (x[0], t, _back(t, x[2]))

    return CustomerState(
        purchases=[PurchaseFact(e, t + b, o, _items(i), _back(t + b, a), rt + t + b)
                   for e, t, o, i, a, rt in row[1]],
        returns=[ReturnFact(e, t + b, o, _items(i), _back(t + b, a), rt + t + b)
                 for e, t, o, i, a, rt in row[2]],
        sessions=[SessionFact(e, t + b, _back(t + b, a), rt + t + b) for e, t, a, rt in row[3]],
        consents=[ConsentFact(e, t + b, _uncode(ch, _CHANNELS), w, _back(t + b, a), rt + t + b)
                  for e, t, ch, w, a, rt in row[4]],
        orders={
            o: OrderFact(
                o,
                fp(p),
                _items(i),
                [(e, t + b, _back(t + b, a), _items(ri)) for e, t, a, ri in rs],
            )
            for o, p, i, rs in row[5]
        },
        sent=sent,
        suppressed=suppressed,
        decided=decided,
        held=[Candidate.from_row(r) for r in row[9]],
        epochs=[Epoch(s + b, s + b + e, fp(f), ps) for s, e, f, ps in row[10]],
        nseq=row[11],
        applied={k: (v[0], v[1]) for k, v in row[12].items()},
        outbox=[(g, r, k, v) for g, r, k, v in row[13]],
        zones=[(t + b, z, _back(t + b, a)) for t, z, a in row[15]] if len(row) > 15 else [],
    )  # fmt: skip


def _decided(r: list[Any]) -> tuple[int, int, int, int]:
    """(created, deadline, seq, arr); format 2 kept only (created, deadline)."""
    if len(r) == 5:
        return (r[1], r[2], r[3], _n(r[4]))
    return (r[1], r[2], 0, NEVER)


def _items(rows: list[list[Any]]) -> Items:
    return tuple((sku, qty) for sku, qty in rows)


def pending_of(data: bytes) -> tuple[list[tuple[int, str, int, int]], list[Any]]:
    """What a restore needs of an encoded state, without building all of it: (deadline,
    message_id, seq, gate_at) of each held candidate (gate_at: in a campaign gate,
    which has it), and the outbox. A restore of a million
    customers reads every state once; most hold nothing."""
    body, box = _split(data)
    row = orjson.loads(body)
    if row[0] not in READABLE_FORMATS:
        raise ValueError(f"unknown customer state format {row[0]!r}")
    held = [(c[11], c[0], c[13], c[21] if len(c) > 21 else 0) for c in row[9]]
    return held, row[13] if box is None else box


def decode(data: bytes) -> CustomerState:
    body, box = _split(data)
    row = orjson.loads(body)
    if row[0] not in READABLE_FORMATS:
        raise ValueError(f"unknown customer state format {row[0]!r}")
    if box is not None:
        row[13] = box
    if row[0] >= 4:
        return _decode_v4(row)
    return CustomerState(
        purchases=[PurchaseFact(e, t, o, _items(i), _n(a), rt) for e, t, o, i, a, rt in row[1]],
        returns=[ReturnFact(e, t, o, _items(i), _n(a), rt) for e, t, o, i, a, rt in row[2]],
        sessions=[SessionFact(e, t, _n(a), rt) for e, t, a, rt in row[3]],
        consents=[ConsentFact(e, t, ch, w, _n(a), rt) for e, t, ch, w, a, rt in row[4]],
        orders={
            o: OrderFact(
                o,
                None if p is None else (p[0], p[1], _n(p[2])),
                _items(i),
                [(e, t, _n(a), _items(ri)) for e, t, a, ri in rs],
            )
            for o, p, i, rs in row[5]
        },
        sent=[_sent(r) for r in row[6]],
        suppressed=[_sent(r) for r in row[7]],
        decided={r[0]: _decided(r) for r in row[8]},
        held=[Candidate.from_row(r) for r in row[9]],
        epochs=[
            Epoch(s, e, None if fp is None else (fp[0], fp[1], _n(fp[2])), ps)
            for s, e, fp, ps in row[10]
        ],
        nseq=row[11],
        applied={k: (v, 2**62) if isinstance(v, int) else (v[0], v[1]) for k, v in row[12].items()},
        outbox=[(g, r, k, v) for g, r, k, v in row[13]],
    )
