"""``verify``'s count of outputs by message_id, without a broker."""

from __future__ import annotations

import pytest


def _send(mid: str, decided_at: str = "2026-11-20T10:00:00Z") -> bytes:
    import orjson

    return orjson.dumps(
        {"message_id": mid, "sanity": {"action": "send", "removed_skus": [],
                                       "decided_at": decided_at}}
    )  # fmt: skip


def _sup(mid: str, rule: str = "frequency_cap") -> bytes:
    import orjson

    return orjson.dumps({"message": {"message_id": mid}, "rule": rule})


def _in(mid: str) -> bytes:
    import orjson

    return orjson.dumps({"message_id": mid})


@pytest.mark.parametrize(
    ("scenario", "sent", "suppressed", "expect"),
    [
        ("every_candidate_once", [_send("a")], [_sup("b")], {"missing": 0, "ok": True}),
        ("one_lost", [_send("a")], [], {"missing": 1, "ok": False}),
        ("identical_copy", [_send("a"), _send("a")], [_sup("b")],
         {"duplicated_identical": 1, "ok": True}),
        ("different_copy", [_send("a"), _send("a", "2026-11-20T11:00:00Z")], [_sup("b")],
         {"duplicated_different": 1, "ok": False}),
        ("never_came_in", [_send("a"), _send("z")], [_sup("b")], {"unexpected": 1, "ok": False}),
    ],
)  # fmt: skip
def test_conservation_counts_by_message_id(
    scenario: str, sent: list[bytes], suppressed: list[bytes], expect: dict[str, object]
) -> None:
    from streams.ops.verify import conserve

    got = conserve([_in("a"), _in("b")], sent, suppressed, [], "x.outbound").as_dict()
    assert {k: got[k] for k in expect} == expect, got


def test_conservation_against_the_offline_replay_and_dead_letters() -> None:
    import orjson

    from streams.ops.verify import conserve

    dead = orjson.dumps({"topic": "x.outbound", "partition": 0, "offset": 2,
                         "value": '{"message_id": "c", "trigger": "nope"}',
                         "value_encoding": "utf-8", "error": "trigger: ..."})  # fmt: skip
    r = conserve([_in("a"), _in("b"), _in("c")], [_send("a")], [_sup("b")], [dead],
                 "x.outbound", offline=[("a", "send", None, ()),
                                        ("b", "suppress", "duplicate_content", ())])  # fmt: skip
    assert (r.candidates, r.dead_lettered, r.missing, r.different) == (2, 1, 0, 1)
    assert r.examples["different"] == ["b"]
