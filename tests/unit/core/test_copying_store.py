"""A store that hands out copies (as the worker's table does: decoded from its bytes)
must give the decisions a store of live objects gives: every change the engine makes
to a state is put back, holds of every kind included."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

from streams.contract import decode as codec
from streams.contract.history import HistoryRecord, read_history, write_history
from streams.core.encoding import decode, encode
from streams.core.engine import Engine
from streams.core.outcomes import Decided
from streams.core.policy import load_policy
from streams.core.state import CustomerState
from streams.core.store import MemoryStore
from streams.offline.generator import generate

ROOT = Path(__file__).resolve().parents[3]


class CopyingStore:
    """Bytes inside, a fresh decoded copy on every get."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        raw = self.data.get(customer_id)
        return None if raw is None else decode(raw)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.data[customer_id] = encode(state)

    def delete(self, customer_id: str) -> None:
        self.data.pop(customer_id, None)

    def keys(self) -> Iterable[str]:
        return list(self.data)


def _decide(store: MemoryStore | CopyingStore, path: Path) -> list[tuple[str, str, str | None,
                                                                          str, int]]:  # fmt: skip
    policy = load_policy(ROOT / "policies" / "example.toml")  # quiet hours and two caps
    engine = Engine(policy, store, 2)
    out = []
    for rec in read_history(path):
        assert isinstance(rec, HistoryRecord)
        ms = rec.record_ms if rec.record_ms is not None else (rec.event_ms or 0)
        parsed = codec.decode(rec.topic, rec.value, ms, ms, policy)
        if not isinstance(parsed, codec.Parsed):
            continue
        p = zlib.crc32(parsed.customer_id.encode()) % 2
        engine.ingest(p, parsed.kind, parsed.customer_id, parsed.event_ms, parsed.fact, ms)
        out += engine.release(p, ms)
    out += engine.flush(0)
    return sorted(
        (o.candidate.message_id, o.decision.action, o.decision.rule, o.candidate.held_for,
         o.candidate.deadline)
        for o in out
        if isinstance(o, Decided)
    )  # fmt: skip


def test_a_copying_store_decides_as_a_live_one_with_quiet_hours_and_caps(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, generate(300, seed=5))
    live = _decide(MemoryStore(), path)
    copied = _decide(CopyingStore(), path)
    assert any(d[3] == "quiet_hours" for d in live) and any(d[3] == "cap" for d in live)
    assert copied == live
