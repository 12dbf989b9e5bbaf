"""The engine's side of delivery, without a broker: decisions kept in the outbox until
delivered, a poisoned candidate dead-lettered alone, units of work rolled back, the
held-message limits, redelivery per source stream, restores and sweeps in steps."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core import rules
from streams.core.engine import Engine
from streams.core.outcomes import Decided, Failed, Output
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.processing.processor import Processor
from tests.helpers import engine_with_outbox, feed, msg, session, worker_outbox


def test_decision_is_kept_in_the_outbox_until_a_later_publish_is_delivered() -> None:
    engine, router = engine_with_outbox()
    feed(engine, msg("m-1", "promotion", "10:00"))
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
    assert engine.outbox is not None
    assert engine.outbox.generation == 1  # new entries are newer than any restored one
    engine.outbox.delivered_up_to(0)
    feed(engine, session("11:00"))  # the next touch drops delivered entries
    state = engine.store.get("c-42")
    assert state is not None and state.outbox == []


def test_a_candidate_whose_decision_raises_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(state: Any, m: Any, skus: Any, policy: Any, view: Any) -> None:
        if m.message_id == "m-poison":
            raise ZeroDivisionError("a bug in a rule")

    monkeypatch.setitem(rules.FUNCTIONS, "frequency_cap", broken)
    engine, router = engine_with_outbox()
    feed(engine, msg("m-poison", "promotion", "10:00", cid="c-1"))
    feed(engine, msg("m-fine", "promotion", "10:01", cid="c-2"))
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
    engine, _router = engine_with_outbox()
    feed(engine, msg("m-1", "promotion", "10:00"))
    engine.begin()
    assert len(engine.release(0, 0)) == 1 and engine.held_count(0) == 0
    engine.rollback()  # the store's transaction undoes the state; the heap follows
    assert engine.held_count(0) == 1


@pytest.mark.parametrize(
    ("scenario", "limits", "size", "held"),
    [
        ("count_limit", {"max_held": 2}, 100, 2),
        ("bytes_limit", {"max_held_bytes": 70_000}, 30_000, 2),
    ],
)
def test_held_candidates_are_capped_and_the_overflow_dead_lettered(
    scenario: str, limits: dict[str, int], size: int, held: int
) -> None:
    import orjson

    from streams.contract import decode as codec
    from streams.core.candidate import Candidate
    from streams.core.encoding import encode
    from streams.core.policy import policy_from_mapping

    policy = policy_from_mapping({"state": limits, "settle": {"promotion": "1h"}})
    engine = Engine(policy, MemoryStore(), outbox=worker_outbox())
    router = Processor(engine, {k: k for k in INPUT_KINDS}, lambda _t: 1)
    failed = []
    for i in range(4):
        rec = msg(f"m-{i}", "promotion", f"10:0{i}", payload={"blob": "x" * size})
        raw = orjson.dumps(rec["value"])
        parsed = codec.decode("outbound", raw, 1795168800000 + 3_600_000, 0, policy)
        assert isinstance(parsed, codec.Parsed) and isinstance(parsed.fact, Candidate)
        outs = engine.ingest(0, "outbound", "c-42", parsed.event_ms, parsed.fact, 0,
                             source=("x.outbound:0", i))  # fmt: skip
        failed += [o for o in outs if isinstance(o, Failed)]
    state = engine.store.get("c-42")
    assert state is not None and [c.message_id for c in state.held] == ["m-0", "m-1"][:held]
    assert [f.candidate.message_id for f in failed] == ["m-2", "m-3"]
    dead = orjson.loads(router.render([failed[0]])[0].value or b"")
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("x.outbound", 0, 2)
    assert "was not held" in dead["error"]
    assert len(encode(state)) < 1024 * 1024  # what the broker accepts as one record


def test_hundreds_of_200kb_messages_never_make_a_state_the_broker_refuses() -> None:
    import orjson

    from streams.contract import decode as codec
    from streams.core.candidate import Candidate
    from streams.core.encoding import encode
    from streams.core.policy import policy_from_mapping

    policy = policy_from_mapping({"settle": {"promotion": "1d"}})
    engine = Engine(policy, MemoryStore())
    for i in range(300):
        rec = msg(f"m-{i}", "promotion", "10:00", payload={"blob": "x" * 200_000})
        parsed = codec.decode("outbound", orjson.dumps(rec["value"]), 1795168800000, 0, policy)
        assert isinstance(parsed, codec.Parsed) and isinstance(parsed.fact, Candidate)
        engine.ingest(0, "outbound", "c-42", parsed.event_ms, parsed.fact, 0)
    state = engine.store.get("c-42")
    assert state is not None and 1 <= len(state.held) <= 3
    assert len(encode(state)) < 1024 * 1024
    assert engine.counts["held_full"] == 300 - len(state.held)


@pytest.mark.parametrize(
    ("scenario", "second", "applied"),
    [
        # the same record read again after a crash: skipped
        ("redelivered_after_a_crash", ("x.sessions:0", 7, 1_000), False),
        # the topic got more partitions: the customer's records now come from partition 3,
        # whose offsets have nothing to do with partition 0's
        ("repartitioned_topic", ("x.sessions:3", 2, 2_000), True),
        # the topic was deleted and created again: offsets start over, times move on
        ("recreated_topic", ("x.sessions:0", 0, 5_000), True),
    ],
)
def test_redelivery_is_recognised_per_source_stream(
    scenario: str, second: tuple[str, int, int], applied: bool
) -> None:
    from streams.core.state import SessionFact

    engine = Engine(DEFAULT_POLICY, MemoryStore())
    engine.ingest(0, "sessions", "c-42", 10, SessionFact("s-1", 10), 1_000,
                  source=("x.sessions:0", 7))  # fmt: skip
    stream, offset, record_ms = second
    engine.ingest(0, "sessions", "c-42", 20, SessionFact("s-2", 20), record_ms,
                  source=(stream, offset))  # fmt: skip
    state = engine.store.get("c-42")
    assert state is not None
    assert (len(state.sessions) == 2) is applied
    assert engine.counts["redelivered"] == (0 if applied else 1)


def test_a_sweep_in_steps_ends_where_a_sweep_at_once_ends() -> None:
    from dataclasses import replace

    from streams.core.encoding import encode

    def run(stepwise: bool) -> dict[str, bytes]:
        engine, _router = engine_with_outbox()
        for i in range(6):
            feed(engine, session(f"2024-01-0{i + 1}T10:00:00Z", cid=f"c-{i}"))
        feed(engine, session("2026-03-01T10:00:00Z", cid="c-late"))  # 400 d TTL passed
        if stepwise:
            steps = engine.sweeping(list(engine.store.keys()), lambda _c: 0)
            n = sum(next(steps) for _ in range(3))  # a few customers, then the rest later
            n += sum(steps)
        else:
            n = engine.sweep(lambda _c: 0)
        assert n >= 1 and engine.counts["sweeps"] == 1
        assert isinstance(engine.store, MemoryStore)
        return {
            cid: encode(replace(st, sessions=[replace(x, event_id="") for x in st.sessions]))
            for cid, st in engine.store.data.items()
        }  # event ids come from a counter: equal states but for them

    assert run(stepwise=True) == run(stepwise=False)
