"""Delivery without a broker: the outbox, per-record transactions, a poisoned candidate."""

from __future__ import annotations

from typing import Any

import pytest

from streams import rules
from streams.engine import INPUT_KINDS, Decided, Engine, Failed, MemoryStore, Output
from streams.policy import DEFAULT_POLICY
from streams.router import Router
from tests.helpers import msg, session
from tests.unit.test_engine import _feed


def _engine_with_outbox() -> tuple[Engine, Router]:
    engine = Engine(DEFAULT_POLICY, MemoryStore())
    router = Router(engine, {k: k for k in INPUT_KINDS}, lambda _t: 1)
    engine.render = router.render_one
    for k in INPUT_KINDS:
        engine.clock(0).set_idle(k, True)
    return engine, router


def test_decision_is_kept_in_the_outbox_until_a_later_publish_is_delivered() -> None:
    engine, router = _engine_with_outbox()
    _feed(engine, msg("m-1", "promotion", "10:00"))
    (out,) = engine.release(0, 0)
    assert isinstance(out, Decided) and out.rendered[0][0] == "send_queue"
    state = engine.store.get("c-42")
    assert state is not None and [(g, r) for g, r, _k, _v in state.outbox] == [(0, "send_queue")]
    # what is rendered once is what gets published, and re-published after a crash
    assert router.render([out])[0].value == out.rendered[0][2]
    assert engine.restore(lambda _c: 0, lambda _p: -1)[1] == [
        ("send_queue", b"c-42", out.rendered[0][2])
    ]
    assert engine.restore(lambda _c: 0, lambda _p: 0)[1] == []  # generation 0 delivered
    assert engine.generation == 1  # new entries are newer than any restored one
    engine.delivered = 0
    _feed(engine, session("11:00"))  # the next touch drops delivered entries
    state = engine.store.get("c-42")
    assert state is not None and state.outbox == []


def test_a_candidate_whose_decision_raises_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(state: Any, m: Any, skus: Any, policy: Any, view: Any) -> None:
        if m.message_id == "m-poison":
            raise ZeroDivisionError("a bug in a rule")

    monkeypatch.setattr(
        rules,
        "RULES",
        tuple((i, broken if i == "frequency_cap" else f, c, t) for i, f, c, t in rules.RULES),
    )
    engine, router = _engine_with_outbox()
    _feed(engine, msg("m-poison", "promotion", "10:00", cid="c-1"))
    _feed(engine, msg("m-fine", "promotion", "10:01", cid="c-2"))
    outs: list[Output] = engine.release(0, 0)
    assert [type(o).__name__ for o in outs] == ["Failed", "Decided"]
    failed = outs[0]
    assert isinstance(failed, Failed) and "ZeroDivisionError: a bug in a rule" in failed.error
    (rec,) = router.render([failed])
    assert rec.role == "dead_letter" and b"m-poison" in (rec.value or b"")
    state = engine.store.get("c-1")
    assert state is not None and state.held == []  # it cannot block the partition again
    assert engine.held_count(0) == 0


def test_rollback_puts_popped_candidates_back() -> None:
    engine, _router = _engine_with_outbox()
    _feed(engine, msg("m-1", "promotion", "10:00"))
    engine.begin()
    assert len(engine.release(0, 0)) == 1 and engine.held_count(0) == 0
    engine.rollback()  # the store's transaction undoes the state; the heap follows
    assert engine.held_count(0) == 1


def test_table_store_writes_only_committed_work() -> None:
    from streams.app import TableStore
    from streams.state import CustomerState

    table: dict[bytes, bytes] = {}
    store = TableStore(table, lambda _c: True)
    store.begin()
    store.put("c-1", CustomerState(nseq=1))
    assert store.get("c-1") is not None and table == {}  # visible to the work, not the table
    store.rollback()
    assert store.get("c-1") is None and table == {}
    store.begin()
    store.put("c-1", CustomerState(nseq=2))
    store.commit()
    got = store.get("c-1")
    assert got is not None and got.nseq == 2 and list(table) == [b"c-1"]
    store.begin()
    store.delete("c-1")
    store.commit()
    assert table == {}
