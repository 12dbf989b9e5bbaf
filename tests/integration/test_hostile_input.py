"""Candidates that are not JSON every reader takes alike, or whose ids hold control
characters, are dead-lettered by the worker and by the offline replay alike, with the
same reason; nothing of them reaches the send queue, and every tool still reads the
topics afterwards."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.helpers import msg, session
from tests.integration.conftest import Env
from tests.integration.live import cli

GOOD = orjson.dumps(msg("m-ok", "promotion", "10:00")["value"])


def _variant(old: bytes, new: bytes) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


# (name, value bytes, part of the dead letter's error); the first four can be written in a
# history file too, the last two only as raw Kafka values
HOSTILE = [
    ("nan", _variant(b'"promotion-1"', b"NaN"), "NaN and Infinity are not JSON"),
    ("beyond_a_double", _variant(b'"promotion-1"', b"1e400"), "beyond the range of a double"),
    (
        "duplicate_key",
        _variant(b'"customer_id":"c-42"', b'"customer_id":"c-42","customer_id":"c-other"'),
        "appears twice",
    ),
    ("control_in_id", _variant(b'"m-ok"', b'"m-1\\n[ERROR] forged"'), "control character"),
    ("byte_order_mark", b"\xef\xbb\xbf" + GOOD.replace(b"m-ok", b"m-bom"), "byte-order mark"),
    ("invalid_utf8", _variant(b'"promotion-1"', b'"\xff\xfe"'), "not valid UTF-8 at byte"),
]


def test_hostile_candidates_are_dead_lettered_alike_and_every_tool_still_reads(
    ts_env: Env, tmp_path: Path
) -> None:
    later = 1_900_000_000_000  # record time after the event times (no clock skew)
    ts_env.produce(
        [{"topic": "outbound", "raw": value, "key": b"c-42", "timestamp_ms": later}
         for _name, value, _why in HOSTILE]
        + [msg("m-ok", "promotion", "10:00"), session("11:00")]
    )  # fmt: skip
    worker = ts_env.worker()
    got = ts_env.collect(
        ("send_queue", "suppressed", "dead_letter"),
        lambda g: len(g["dead_letter"]) >= len(HOSTILE) and len(g["send_queue"]) >= 1,
        worker=worker,
    )
    worker.stop()
    dead = [orjson.loads(r.value) for r in got["dead_letter"]]
    for name, _value, why in HOSTILE:
        assert any(why in d["error"] for d in dead), (name, [d["error"] for d in dead])
    sent = [orjson.loads(r.value) for r in got["send_queue"]]  # readable by any JSON reader
    assert [s["message_id"] for s in sent] == ["m-ok"] and not got["suppressed"]
    assert "[ERROR] forged" not in worker.log.read_text().replace("\\n[ERROR]", "")

    # every tool reads the topics afterwards, no traceback
    for args in (["verify"], ["inspect", "all"], ["explain", "m-ok"], ["stats", "--since", "30d"],
                 ["inspect", "dead-letter", "--json"]):  # fmt: skip
        res = cli(ts_env, *args)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (args, res.stderr)

    # the offline replay refuses the same candidates with the same words
    history = tmp_path / "hostile.jsonl"
    lines = [b'{"topic":"outbound","value":' + value + b"}" for _n, value, _w in HOSTILE[:4]]
    lines.append(orjson.dumps(msg("m-ok", "promotion", "10:00")))
    history.write_bytes(b"\n".join(lines) + b"\n")
    res = cli(ts_env, "replay", str(history), "--offline", "--out", str(tmp_path / "d.jsonl"))
    assert res.returncode == 0, res.stderr
    decided = [orjson.loads(line) for line in (tmp_path / "d.jsonl").read_bytes().splitlines()]
    assert [d["message_id"] for d in decided] == ["m-ok"]
    live_errors = {d["error"] for d in dead}
    for name, _value, why in HOSTILE[:4]:
        offline = [line for line in res.stdout.splitlines() if why in line]
        assert offline, (name, res.stdout)
        assert any(err in offline[0] for err in live_errors), (name, offline[0], live_errors)
