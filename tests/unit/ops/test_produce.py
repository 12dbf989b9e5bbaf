"""Replay into Kafka: times moved so a history ends now, progress that says when it ends."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from streams.cli.progress import Progress, count_lines
from streams.contract.history import write_history
from streams.ops.produce import rebase_delta, rebased
from tests.helpers import cart, purchase


@pytest.mark.parametrize(
    ("topic", "raw", "expected"),
    [
        (
            "purchases",
            b'{"event_id":"p-1","customer_id":"c","occurred_at":"2026-11-20T10:00:00Z",'
            b'"order_id":"o","items":[],"unit":1.10}',
            b'{"event_id":"p-1","customer_id":"c","occurred_at":"2026-11-21T10:00:00Z",'
            b'"order_id":"o","items":[],"unit":1.10}',
        ),
        (
            "outbound",
            b'{"message_id":"m","created_at":"2026-11-20T10:00:00Z","context":'
            b'{"cart_updated_at":"2026-11-20T09:59:00+00:00","skus":["A"]},"n":123456789012345678901}',
            b'{"message_id":"m","created_at":"2026-11-21T10:00:00Z","context":'
            b'{"cart_updated_at":"2026-11-21T09:59:00Z","skus":["A"]},"n":123456789012345678901}',
        ),
        ("sessions", b"not json", b"not json"),
    ],
)
def test_rebase_moves_the_time_fields_and_keeps_every_other_byte(
    topic: str, raw: bytes, expected: bytes
) -> None:
    assert rebased(topic, raw, 86_400_000) == expected


def test_rebase_delta_makes_the_last_event_now(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [purchase("09:00"), cart("m", "10:00", "09:59"), purchase("08:00")])
    last = 1795_000_000_000
    from datetime import UTC, datetime

    ten = int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp() * 1000)
    assert rebase_delta(path, last) == last - ten
    assert count_lines(str(path)) == 3


def test_progress_says_done_total_rate_and_eta() -> None:
    out = io.StringIO()
    bar = Progress("produced", 200, out)
    bar.update(50)
    bar.finish()
    line = out.getvalue().strip().splitlines()[-1]
    assert line.startswith("produced: 50/200 records (25%) ") and "/s ETA " in line
    assert orjson.dumps(line)  # plain text, no control characters off a terminal
    assert "\x1b" not in out.getvalue()
