"""The fast decode path answers exactly as the models do.

``decode`` reads a record straight from its parsed JSON when it is sure the record's
model accepts it, and asks the model otherwise. Here both paths meet a generated table:
the valid records of every kind the generators write, then the same records mutated one
field at a time (dropped, null, another JSON type, strings at and over every length
bound, numbers at and over every bound, unknown enum values, timestamps in every form
pydantic takes or refuses, big lists, extra keys, deep nesting, odd payloads, ids and
zones the post-validation checks refuse). Every case must come out of ``decode``
exactly as out of ``decode_with_models`` (the model path, the reference): the same core
objects field by field, or the same dead-letter text. And the fast path must really be
taken for the records it is meant for, or it would hide behind the model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import INPUT_MODELS
from schemas import models as schema_models
from schemas.models import MessageContext
from streams.contract import decode as codec
from streams.contract import fast_decode, strict_json
from streams.core.policy import DEFAULT_POLICY
from streams.offline.generator import generate
from streams.offline.scenarios import realistic

LATER = 4_102_444_800_000  # 2100-01-01: a record time after every event time used here

KINDS = ("purchases", "returns", "sessions", "consents", "identities", "outbound")

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str
    raw: bytes
    may_defer: bool = False  # a form its model accepts that the fast path leaves to it
    record_ms: int = LATER


def _generated() -> list[tuple[str, dict[str, Any]]]:
    found = [(r["topic"], r["value"]) for r in generate(50)]
    records = realistic(40, blast=True, holds=True, links=True)
    found += [(r["topic"], r["value"]) for r, _truth in records if r is not None]
    return found


GENERATED = _generated()


def _dump(value: Any, **how: Any) -> bytes:
    """The standard library writes integers beyond 64 bits, which orjson refuses; values
    nested deeper than it writes go in by their ``_deep`` placeholder."""
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":"), **how).encode("utf-8")
    for levels in _DEEP.findall(raw):
        n = int(levels)
        nested = b"".join(b'{"a":' if i % 2 else b"[" for i in range(n))
        closing = b"".join(b"}" if i % 2 else b"]" for i in reversed(range(n)))
        raw = raw.replace(b'"<deep %d>"' % n, nested + b"1" + closing)
    return raw


_DEEP = re.compile(rb'"<deep (\d+)>"')


def _deep(levels: int) -> str:
    """A value ``levels`` arrays and objects deep, once ``_dump`` has written it."""
    return f"<deep {levels}>"


def _first(kind: str, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return copy.deepcopy(next(v for k, v in GENERATED if k == kind and want(v)))


def _full_records() -> dict[str, dict[str, Any]]:
    """One generated record per kind, every optional field filled in."""
    purchase = _first("purchases", lambda v: "currency" in v)
    purchase["items"][0].setdefault("unit_price", "19.90")
    ret = _first("returns", lambda v: True)
    ret.setdefault("reason", "did not fit")
    session = _first("sessions", lambda v: "timezone" in v)
    consent = _first("consents", lambda v: True)
    link = _first("identities", lambda v: "source" in v)
    message = _first("outbound", lambda v: "basis" in v.get("context", {}))
    message["context"].update(
        cart_id="cart-1",
        cart_updated_at="2026-01-05T10:00:00Z",
        order_id="o-1",
        timezone="Europe/Berlin",
    )
    message["campaign_id"] = "camp-1"
    return {"purchases": purchase, "returns": ret, "sessions": session,
            "consents": consent, "identities": link, "outbound": message}  # fmt: skip


FULL = _full_records()


def _paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every field of a record, nested ones too (the first of each list)."""
    if isinstance(value, dict):
        for key, v in value.items():
            yield (*prefix, key)
            yield from _paths(v, (*prefix, key))
    elif isinstance(value, list) and value:
        yield (*prefix, 0)
        yield from _paths(value[0], (*prefix, 0))


def _get(record: dict[str, Any], path: Path) -> Any:
    node: Any = record
    for key in path:
        node = node[key]
    return node


def _with(record: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _without(record: dict[str, Any], path: Path) -> dict[str, Any]:
    out = copy.deepcopy(record)
    del _get(out, path[:-1])[path[-1]]
    return out


def _name(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _string_paths(kind: str) -> list[Path]:
    return [p for p in _paths(FULL[kind]) if isinstance(_get(FULL[kind], p), str)]


TYPE_SWAPS: list[Any] = [None, 0, 1, -1, 1.0, 1.5, True, False, "", "x", [], {}, ["x"], {"a": 1}]
LENGTHS = (1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025)
BIG_INTS = (0, 1, 2, 999_999, 1_000_000, 1_000_001, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
            -(2**63) - 1, 10**30)  # fmt: skip

TIMESTAMPS_READ = [
    "2026-01-05T10:00:00Z",
    "2026-01-05T10:00:00+00:00",
    "2026-01-05T10:00:00-00:00",
    "2026-01-05T10:00:00-05:30",
    "2026-01-05T10:00:00+14:00",
    "2026-01-05T10:00:00+23:59",
    "2026-01-05T10:00:00-23:59",
    *(f"2026-01-05T10:00:00.{'987654321'[:n]}Z" for n in range(1, 10)),
    *(f"2026-01-05T10:00:00.{'123456789'[:n]}-05:30" for n in range(1, 10)),
    "2026-01-05T10:00:00.9999995Z",
    "2026-01-05T10:00:00.000Z",
    "2024-02-29T23:59:59.999Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999+01:00",
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00.001+00:01",
]
TIMESTAMPS_LEFT: list[Any] = [
    "2026-01-05T10:00:00",  # no offset
    "2026-01-05 10:00:00Z",
    "2026-01-05t10:00:00Z",
    "2026-01-05T10:00:00z",
    "2026-01-05t10:00:00z",
    "2026-01-05_10:00:00Z",
    "2026-01-05",
    "2026-01-05T10:00Z",
    "2026-01-05T10Z",
    "2026-01-05T10:00:00.Z",
    "2026-01-05T10:00:00,5Z",
    "2026-01-05T10:00:00.1234567890Z",
    "2026-01-05T10:00:00.123456789012Z",
    "2026-01-05T10:00:00+0530",
    "2026-01-05T10:00:00+05",
    "2026-01-05T10:00:00+05:30:15",
    "2026-01-05T10:00:00+24:00",
    "2026-01-05T10:00:00-24:00",
    "2026-01-05T10:00:00+05:60",
    "2026-01-05T10:00:00+99:99",
    "2026-02-29T10:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-04-31T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-00-10T10:00:00Z",
    "2026-01-00T10:00:00Z",
    "2026-01-05T24:00:00Z",
    "2026-01-05T23:60:00Z",
    "2026-01-05T23:59:60Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "+2026-01-05T10:00:00Z",
    "-2026-01-05T10:00:00Z",
    " 2026-01-05T10:00:00Z",
    "2026-01-05T10:00:00Z ",
    "2026-01-05T10:00:00Z\n",
    "2026-1-05T10:00:00Z",
    "20260105T100000Z",
    "2026-W02-1T10:00:00Z",
    "\uff12026-01-05T10:00:00Z",  # a fullwidth digit
    "2026-01-05T10:00:00.\u0661Z",  # an Arabic-Indic digit
    "1767607200",
    "",
    1767607200,
    1767607200.5,
    True,
    None,
]

ENUM_ODD = ["", "EMAIL", " email", "email ", "e-mail", "Started", "LINK", "unknown", "marketing\n"]


def _cases_generated() -> Iterator[Case]:
    for i, (kind, value) in enumerate(GENERATED):
        yield Case(f"generated {kind} #{i}", kind, orjson.dumps(value))


def _cases_fields() -> Iterator[Case]:
    for kind, rec in FULL.items():
        yield Case(f"{kind} with every field", kind, _dump(rec))
        for path in _paths(rec):
            yield Case(f"{kind} without {_name(path)}", kind, _dump(_without(rec, path)))
            for swap in TYPE_SWAPS:
                yield Case(f"{kind} {_name(path)}={swap!r}", kind, _dump(_with(rec, path, swap)))
    promotion = {**FULL["outbound"], "trigger": "promotion"}
    bare = _without(promotion, ("context",))
    yield Case("a promotion without context", "outbound", _dump(bare))
    for context in ({}, None, [], {"timezone": None}):
        rec = {**promotion, "context": context}
        yield Case(f"a promotion with context {context!r}", "outbound", _dump(rec))


def _cases_lengths() -> Iterator[Case]:
    for kind in KINDS:
        for path in _string_paths(kind):
            for n in LENGTHS:
                for char in ("a", "\U0001f600", "\u00e9"):
                    rec = _with(FULL[kind], path, char * n)
                    yield Case(f"{kind} {_name(path)} {n}x{char!r}", kind, _dump(rec))


PRICES_READ: list[Any] = [None, 0, 3, -3, 2**64, 10**30, 1.5, -0.0, 1e300, "19.90", "1", "-1.5",
                          "0", "007", "1" * 30, "1." + "1" * 30]  # fmt: skip
PRICES_LEFT: list[Any] = ["1e3", " 1", "1 ", "+1", ".5", "5.", "1_000", "1" * 31,
                          "1." + "1" * 31, "\u0661\u0662", "NaN", "Infinity", "-inf", "abc", "",
                          "1.2.3"]  # fmt: skip


def _cases_numbers() -> Iterator[Case]:
    for kind in ("purchases", "returns"):
        for q in BIG_INTS:
            rec = _with(FULL[kind], ("items", 0, "quantity"), q)
            yield Case(f"{kind} quantity {q}", kind, _dump(rec))
    for price in PRICES_READ + PRICES_LEFT:
        rec = _with(FULL["purchases"], ("items", 0, "unit_price"), price)
        yield Case(f"unit_price {price!r}", "purchases", _dump(rec), price in PRICES_LEFT)
    ret = _with(FULL["returns"], ("items", 0, "unit_price"), "not a price")
    yield Case("a return's item with a unit_price it does not know", "returns", _dump(ret))


def _cases_enums() -> Iterator[Case]:
    enums = {
        "sessions": {("kind",): ["started", "ended"]},
        "consents": {("channel",): ["email", "sms", "push", "in_app"],
                     ("status",): ["granted", "withdrawn"]},
        "identities": {("kind",): ["link", "unlink"]},
        "outbound": {("trigger",): ["abandoned_cart", "welcome", "welcome_back",
                                    "product_recommendation", "review_request", "win_back",
                                    "replenishment", "promotion"],
                     ("channel",): ["email", "sms", "push", "in_app"],
                     ("category",): ["marketing", "transactional"]},
    }  # fmt: skip
    for kind, fields in enums.items():
        for path, values in fields.items():
            for value in values + ENUM_ODD:
                rec = _with(FULL[kind], path, value)
                yield Case(f"{kind} {_name(path)} {value!r}", kind, _dump(rec))
    for kind, path in (("identities", ("kind",)), ("outbound", ("category",))):
        rec = _without(FULL[kind], path)
        yield Case(f"{kind} {_name(path)} by default", kind, _dump(rec))


def _timestamp_paths(kind: str) -> list[Path]:
    rec = FULL[kind]
    if kind != "outbound":
        return [("occurred_at",)]
    sku = next(iter(rec["context"]["basis"]))
    return [("created_at",), ("context", "cart_updated_at"), ("context", "basis", sku)]


def _cases_timestamps() -> Iterator[Case]:
    for kind in KINDS:
        for path in _timestamp_paths(kind):
            for ts in TIMESTAMPS_READ + TIMESTAMPS_LEFT:
                rec = _with(FULL[kind], path, ts)
                yield Case(f"{kind} {_name(path)} {ts!r}", kind, _dump(rec), ts in TIMESTAMPS_LEFT)


def _cases_lists() -> Iterator[Case]:
    for kind in ("purchases", "returns"):
        item = FULL[kind]["items"][0]
        for n in (0, 1, 2, 60, 126, 127, 499, 500, 501):
            items = [{**item, "sku": f"SKU-{i}"} for i in range(n)]
            rec = {**FULL[kind], "items": items}
            # over MAX_OPENINGS brackets: it may nest deeper than pydantic reads
            yield Case(f"{kind} {n} items", kind, _dump(rec), may_defer=n + 2 > 128)
        for odd in ([1], ["x"], [None], [[]], [{}], [{"quantity": 1}], {"sku": "x"}):
            yield Case(f"{kind} items {odd!r}", kind, _dump({**FULL[kind], "items": odd}))
    message = FULL["outbound"]
    for n in (0, 1, 60, 500, 501):
        ctx = {**message["context"], "skus": [f"SKU-{i}" for i in range(n)]}
        yield Case(f"outbound {n} skus", "outbound", _dump({**message, "context": ctx}))
        basis = {f"SKU-{i}": "2026-01-01T00:00:00Z" for i in range(n)}
        ctx = {**message["context"], "basis": basis}
        yield Case(f"outbound basis of {n}", "outbound", _dump({**message, "context": ctx}))
    for key in ("", "S" * 128, "S" * 129, "\U0001f600" * 128, "\U0001f600" * 129):
        ctx = {**message["context"], "basis": {key: "2026-01-01T00:00:00Z"}}
        rec = {**message, "context": ctx}
        yield Case(f"outbound basis key of {len(key)}", "outbound", _dump(rec))
    for odd in ([], "x", 1, [["S", "2026-01-01T00:00:00Z"]], {"S": None}, {"S": 1}):
        ctx = {**message["context"], "basis": odd}
        yield Case(f"outbound basis {odd!r}", "outbound", _dump({**message, "context": ctx}))
    for odd_skus in ("S", ["S", 1], [None], [""], [["S"]], {"S": 1}):
        ctx = {**message["context"], "skus": odd_skus}
        yield Case(f"outbound skus {odd_skus!r}", "outbound", _dump({**message, "context": ctx}))


def _cases_extras() -> Iterator[Case]:
    extras: list[tuple[str, Any]] = [
        ("loyalty_tier", "gold"),
        ("nested", {"tier": {"name": "gold", "since": [2020, 1.5, None, True]}}),
        ("", None),
        ("model_config", 1),
        ("__class__", "x"),
        ("big", 2**64),
        ("deep 20", _deep(20)),
    ]
    # nesting pydantic refuses beyond about 200 levels, orjson beyond 1024
    deep = [(f"deep {n}", _deep(n)) for n in (150, 198, 199, 200, 201, 250, 600, 1000)]
    for kind, rec in FULL.items():
        for key, value in extras + deep:
            left = key in dict(deep)
            yield Case(f"{kind} extra {key!r}", kind, _dump({**rec, key: value}), left)
            for path in _paths(rec):
                if isinstance(_get(rec, path), dict):
                    # a key in payload is no extra but the payload's: numbers may be left
                    theirs = path[-1] == "payload"
                    nested = _dump(_with(rec, (*path, key), value))
                    yield Case(f"{kind} {_name(path)}.{key}", kind, nested, left or theirs)
    deep_duplicate = b'{"x":' + b"[" * 1000 + b'{"a":1,"a":2}' + b"]" * 1000 + b"}"
    yield Case("a duplicate key 1000 levels down", "sessions", deep_duplicate)


def _cases_payloads() -> Iterator[Case]:
    message = FULL["outbound"]
    payloads: list[tuple[str, Any, bool]] = [
        ("empty", {}, False),
        ("a template", {"template": "t-1"}, False),
        ("a template that is a number", {"template": 1}, False),
        ("a null template", {"template": None}, False),
        ("nested", {"a": {"b": [1, 2.5, "x", None, True, {"c": -0.0}]}}, False),
        ("floats", {"x": 0.1, "y": 9.2e18, "z": -1e-300, "w": -9.2e18}, False),
        ("a 64-bit integer", {"x": 2**64 - 1, "y": -(2**63)}, False),
        ("unicode keys", {"\u00e9t\u00e9": "\U0001f600", "": ""}, False),
        # orjson reads integers beyond 64 bits as floats, pydantic as integers
        ("a float as big as an integer beyond 64 bits", {"x": 1e19}, True),
        ("a float of 2**63", {"x": 2.0**63}, True),
        ("an integer beyond 64 bits", {"x": 2**64}, True),
        ("a negative integer beyond 64 bits", {"x": -(2**63) - 1}, True),
        ("an integer beyond 64 bits nested", {"x": [{"y": 10**30}]}, True),
        ("a list", [], False),
        ("a string", "x", False),
        ("a number", 1, False),
        ("null", None, False),
        ("deep 250", _deep(250), True),
    ]
    for name, payload, left in payloads:
        rec = {**message, "payload": payload}
        yield Case(f"payload {name}", "outbound", _dump(rec), left)
    yield Case("no payload", "outbound", _dump(_without(message, ("payload",))))


def _cases_documents() -> Iterator[Case]:
    for kind, rec in FULL.items():
        for name, raw in (
            ("with a space before each colon", _dump(rec, indent=2).replace(b'":', b'" :')),
            ("with ASCII escapes", json.dumps(rec, ensure_ascii=True).encode()),
            ("indented", json.dumps(rec, indent=4).encode()),
        ):
            yield Case(f"{kind} {name}", kind, raw)
        for top in ([], [rec], "x", 1, None, True, {}):
            yield Case(f"{kind} document {top!r:.20}", kind, _dump(top))


def _cases_after_validation() -> Iterator[Case]:
    """Refused after the model accepted: ids for logs, zones, context, clocks."""
    for kind, rec in FULL.items():
        id_field = "message_id" if kind == "outbound" else "event_id"
        for field in (id_field, "customer_id", "linked_to"):
            if field in rec:
                for ch in ("\x00", "\x1f", "\x7f", "\x85", "\u2028", "\t"):
                    odd = _with(rec, (field,), f"id{ch}x")
                    yield Case(f"{kind} {field} with {ch!r}", kind, _dump(odd))
        yield Case(f"{kind} from a clock fast", kind, _dump(rec), record_ms=LATER // 2)
        yield Case(f"{kind} from a clock fast at 0", kind, _dump(rec), record_ms=0)
    for zone in ("CEST", "Mars/Olympus", "europe/berlin", "UTC", "Etc/GMT+5"):
        session = _with(FULL["sessions"], ("timezone",), zone)
        yield Case(f"session in zone {zone}", "sessions", _dump(session))
        ctx = {**FULL["outbound"]["context"], "timezone": zone}
        rec = {**FULL["outbound"], "context": ctx}
        yield Case(f"outbound in zone {zone}", "outbound", _dump(rec))
    for trigger in ("abandoned_cart", "product_recommendation", "replenishment", "review_request"):
        bare = {**FULL["outbound"], "trigger": trigger, "context": {}}
        yield Case(f"{trigger} without its context", "outbound", _dump(bare))
        empty = {**bare, "context": {"skus": [], "cart_updated_at": None, "order_id": None}}
        yield Case(f"{trigger} with empty skus", "outbound", _dump(empty))
    ended = _with(FULL["sessions"], ("kind",), "ended")
    yield Case("a session that ended", "sessions", _dump(ended))


FAMILIES: dict[str, Callable[[], Iterator[Case]]] = {
    "every generated record": _cases_generated,
    "a field dropped, null or of another JSON type": _cases_fields,
    "strings at and over every length bound": _cases_lengths,
    "numbers at and over every bound": _cases_numbers,
    "enum values known and unknown": _cases_enums,
    "timestamps in every form": _cases_timestamps,
    "lists and maps at and over their bounds": _cases_lists,
    "extra keys at every level and nesting deep": _cases_extras,
    "payloads pydantic may read differently": _cases_payloads,
    "documents written differently or not objects": _cases_documents,
    "records refused after validation": _cases_after_validation,
}


def _shape(x: Any) -> Any:
    """Everything a decoded record holds, types included (True is not 1), for ``==``."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        fields = tuple((f.name, _shape(getattr(x, f.name))) for f in dataclasses.fields(x))
        return type(x).__name__, fields
    if isinstance(x, tuple | list):
        return type(x).__name__, tuple(_shape(v) for v in x)
    return type(x).__name__, x


def _run(case: Case) -> tuple[Any, Any, bool, bool]:
    """(fast path's result, model path's result, read by the fast path, valid by the model)."""
    fast = codec.decode(case.kind, case.raw, case.record_ms, 7, DEFAULT_POLICY)
    model = codec.decode_with_models(case.kind, case.raw, case.record_ms, 7, DEFAULT_POLICY)
    value, wrong = strict_json.parse(case.raw)
    read = wrong is None and fast_decode.read(case.kind, case.raw, value) is not None
    try:
        codec.MODELS[case.kind].model_validate_json(case.raw)
    except ValidationError:
        valid = False
    else:
        valid = wrong is None
    return fast, model, read, valid


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_fast_path_decodes_exactly_as_the_models(family: str) -> None:
    cases = list(FAMILIES[family]())
    differ, deferred, guessed = [], [], []
    for case in cases:
        fast, model, read, valid = _run(case)
        if _shape(fast) != _shape(model):
            differ.append(f"{case.name}:\n  fast  {fast}\n  model {model}")
        if read and not valid:
            guessed.append(case.name)
        if valid and not read and not case.may_defer:
            deferred.append(case.name)
    assert not differ, f"{len(differ)} of {len(cases)} differ:\n" + "\n".join(differ[:10])
    assert not guessed, "read, yet the model refuses:\n" + "\n".join(guessed[:20])
    assert not deferred, "valid, yet left to the model:\n" + "\n".join(deferred[:20])


def test_every_generated_record_of_every_kind_is_read_without_its_model() -> None:
    read: dict[str, int] = dict.fromkeys(KINDS, 0)
    for kind, value in GENERATED:
        raw = orjson.dumps(value)
        assert fast_decode.read(kind, raw, orjson.loads(raw)) is not None, (kind, value)
        read[kind] += 1
    assert all(read.values()), read


def test_the_table_holds_model_refusals_and_acceptances_of_every_kind() -> None:
    """A table where the model refused nothing (or everything) would prove little."""
    outcomes: dict[tuple[str, bool], int] = {}
    for family in FAMILIES.values():
        for case in family():
            got = codec.decode_with_models(case.kind, case.raw, case.record_ms, 7, DEFAULT_POLICY)
            key = (case.kind, isinstance(got, codec.Parsed))
            outcomes[key] = outcomes.get(key, 0) + 1
    assert all(outcomes.get((k, ok), 0) >= 20 for k in KINDS for ok in (True, False)), outcomes


def test_a_timestamp_reads_as_the_epoch_ms_of_the_datetime_pydantic_builds() -> None:
    message = FULL["outbound"]
    for ts in TIMESTAMPS_READ:
        raw = _dump({**message, "created_at": ts})
        got = codec.decode("outbound", raw, LATER, 0, DEFAULT_POLICY)
        want = codec.decode_with_models("outbound", raw, LATER, 0, DEFAULT_POLICY)
        if isinstance(want, codec.Parsed):  # else too far ahead of the record: clock skew
            assert isinstance(got, codec.Parsed) and got.event_ms == want.event_ms, ts


@pytest.mark.parametrize("model", sorted(fast_decode.READS))
def test_a_field_added_to_a_model_fails_until_the_fast_reader_checks_it(model: str) -> None:
    """Extra keys are allowed: a new constrained field the fast reader does not check
    would be accepted there and refused by the model."""
    assert set(getattr(schema_models, model).model_fields) == fast_decode.READS[model]


def test_every_input_model_has_its_fields_declared() -> None:
    assert set(INPUT_MODELS) | {"PurchaseItem", "ReturnItem", "MessageContext"} == set(
        fast_decode.READS
    )


def test_every_context_field_a_trigger_may_require_is_a_field_of_valid() -> None:
    names = {f.name for f in dataclasses.fields(fast_decode.Valid)}
    assert set(MessageContext.model_fields) <= names


def test_an_event_in_year_10000_utc_is_unreadable_not_a_crash() -> None:
    """Its model takes ``9999-12-31T23:59:59-01:00``; the clock-skew reason must still
    name it (``iso`` cannot write a year past 9999)."""
    raw = _dump({**FULL["purchases"], "occurred_at": "9999-12-31T23:59:59-01:00"})
    got = codec.decode("purchases", raw, LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Unreadable)
    assert got.error.startswith("occurred_at 253402304399000 ms after 1970-01-01T00:00:00Z is ")


def test_a_record_nested_1000_deep_is_refused_by_its_model_not_a_crash() -> None:
    """orjson reads 1024 levels, past Python's recursion limit: counting its keys must
    not recurse, and pydantic refuses the nesting in its own words."""
    raw = _dump({**FULL["sessions"], "x": _deep(1000)})
    got = codec.decode("sessions", raw, LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, codec.Unreadable) and "recursion limit exceeded" in got.error
