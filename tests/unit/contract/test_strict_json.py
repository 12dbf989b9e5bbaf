"""The strict decoder's table: what is JSON every reader takes alike, and the one-line
reason (with its byte offset) for what is not. The worker and the offline replay read
through the same decoder, so both refuse the same records with the same words."""

from __future__ import annotations

import orjson
import pytest

from streams.contract import decode
from streams.contract.history import HistoryRecord, parse_line
from streams.contract.strict_json import control_in, problem
from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.processing.processor import Processor
from tests.helpers import msg, purchase

CANDIDATE = orjson.dumps(msg("m-1", "promotion", "10:00")["value"])
LATER = 1_900_000_000_000  # a record time after every event time here (no clock skew)


def _with(payload: bytes) -> bytes:
    """The candidate with ``payload`` written in place of its payload, byte for byte."""
    head, _payload, _tail = CANDIDATE.partition(b'"payload":')
    return head + b'"payload":' + payload + b"}"


@pytest.mark.parametrize(
    ("scenario", "raw", "reason"),
    [
        ("nan", _with(b'{"x":NaN}'), "NaN and Infinity are not JSON"),
        ("infinity", _with(b'{"x":Infinity}'), "NaN and Infinity are not JSON"),
        ("minus_infinity", _with(b'{"x":-Infinity}'), "NaN and Infinity are not JSON"),
        ("beyond_a_double", _with(b'{"x":1e400}'), "a number beyond the range of a double"),
        ("negative_beyond_a_double", _with(b'{"x":-1e400}'), "beyond the range of a double"),
        ("byte_order_mark", b"\xef\xbb\xbf" + CANDIDATE, "byte-order mark (bytes 0-2)"),
        ("invalid_utf8", _with(b'{"x":"\xff\xfe"}'), "not valid UTF-8 at byte"),
        ("truncated", CANDIDATE[:-5], "not valid JSON at byte"),
        ("duplicate_top_level_key",
         CANDIDATE.replace(b'"customer_id":"c-42"', b'"customer_id":"c-42","customer_id":"c-9"'),
         "key 'customer_id' appears twice in one object at byte"),
        ("duplicate_nested_key", _with(b'{"x":1,"y":{"k":1,"k":2}}'), "key 'k' appears twice"),
    ],
)  # fmt: skip
def test_json_not_every_reader_takes_alike_is_refused_with_its_reason_and_offset(
    scenario: str, raw: bytes, reason: str
) -> None:
    got = problem(raw)
    assert got is not None and reason in got, (scenario, got)
    for kind in ("outbound", "purchases"):
        refused = decode.decode(kind, raw, LATER, 0, DEFAULT_POLICY)
        assert isinstance(refused, decode.Unreadable) and reason in refused.error, scenario


@pytest.mark.parametrize(
    ("scenario", "raw"),
    [
        ("plain", CANDIDATE),
        ("a quote and a colon inside a string are not a key", _with(b'{"x":"a\\":\\"b"}')),
        ("the same key in two objects", _with(b'{"k":1,"o":{"k":2},"l":[{"k":3},{"k":4}]}')),
        ("a 30-digit integer", _with(b'{"n":123456789012345678901234567890}')),
        ("the largest double", _with(b'{"n":1.7976931348623157e308}')),
        ("escaped unicode", _with(b'{"t":"\\u00e9\\u2028"}')),
        ("spaces around colons", _with(b'{ "x" : 1 , "y" : [ ] }')),
    ],
)  # fmt: skip
def test_json_every_reader_takes_alike_is_accepted(scenario: str, raw: bytes) -> None:
    assert problem(raw) is None, scenario
    assert isinstance(decode.decode("outbound", raw, LATER, 0, DEFAULT_POLICY), decode.Parsed)


@pytest.mark.parametrize(
    ("scenario", "kind", "field", "value"),
    [
        ("a newline in a customer id", "outbound", "customer_id", "c-1\n[ERROR] forged"),
        ("an escape in a message id", "outbound", "message_id", "m-\x1b[31m"),
        ("DEL in an event id", "purchases", "event_id", "p-\x7f"),
        ("a C1 control in a customer id", "purchases", "customer_id", "c-\x85"),
        ("a line separator in an event id", "sessions", "event_id", "s-\u2028"),
    ],
)
def test_ids_with_control_characters_are_refused(
    scenario: str, kind: str, field: str, value: str
) -> None:
    rec = {"outbound": msg("m-1", "promotion", "10:00"), "purchases": purchase("10:00"),
           "sessions": {"topic": "sessions", "value": {"event_id": "s", "customer_id": "c-42",
                        "occurred_at": "2026-11-20T10:00:00Z", "session_id": "x",
                        "kind": "started"}}}[kind]  # fmt: skip
    value_json = {**rec["value"], field: value}
    got = decode.decode(kind, orjson.dumps(value_json), LATER, 0, DEFAULT_POLICY)
    assert isinstance(got, decode.Unreadable), scenario
    assert got.error.startswith(f"{field} holds a control character (U+"), got.error
    assert control_in(field, "c-42") is None


def test_the_offline_replay_refuses_a_value_with_the_workers_words() -> None:
    """A history line whose value has NaN is not a bad line: its value reaches the same
    decoder as a record in Kafka would, and is refused with the same reason."""
    raw = _with(b'{"x":NaN}')
    line = b'{"topic":"outbound","value":' + raw + b"}"
    rec = parse_line(7, line)
    assert isinstance(rec, HistoryRecord) and rec.value == raw
    processor = Processor(Engine(DEFAULT_POLICY, MemoryStore()), {"outbound": "outbound"},
                          lambda _t: 1)  # fmt: skip
    offline = processor.read("outbound", rec.value, LATER, 0)
    (dead,) = processor.on_record("outbound", 0, 3, LATER, b"c-42", raw, 0)
    assert isinstance(offline, decode.Unreadable)
    assert orjson.loads(dead.value or b"")["error"] == offline.error
