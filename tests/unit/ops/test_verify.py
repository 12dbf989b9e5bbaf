"""``verify``'s count of outputs by message_id, without a broker."""

from __future__ import annotations

from typing import Any

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


@pytest.mark.parametrize(
    ("scenario", "came_in", "sent", "suppressed", "expect"),
    [
        ("an_id_that_came_in_twice_decided_twice_once_sent",
         ["a", "a"], [_send("a")], [_sup("a", "duplicate_message")],
         {"message_ids": 1, "candidates": 2, "ids_decided_again": 1, "ids_sent_again": 0,
          "missing": 0, "ok": True}),
        ("an_id_sent_twice_with_different_decisions",
         ["a", "a"], [_send("a"), _send("a", "2026-11-21T10:00:00Z")], [],
         {"ids_decided_again": 1, "ids_sent_again": 1, "duplicated_different": 0,
          "ok": False}),
        ("one_send_written_twice_byte_for_byte_is_a_duplicate_not_a_second_send",
         ["a"], [_send("a"), _send("a")], [],
         {"ids_sent_again": 0, "duplicated_identical": 1, "ok": True}),
        ("records_that_are_not_decisions_are_counted_and_left_out",
         ["a"], [_send("a"), b"not json", b'{"message_id": "x"}'], [b"[1, 2]"],
         {"unreadable_outputs": 3, "decisions": 1, "unexpected": 0, "ok": True}),
    ],
)  # fmt: skip
def test_verify_counts_ids_decided_and_sent_more_than_once(
    scenario: str,
    came_in: list[str],
    sent: list[bytes],
    suppressed: list[bytes],
    expect: dict[str, object],
) -> None:
    from streams.ops.verify import conserve

    got = conserve([_in(m) for m in came_in], sent, suppressed, [], "x.outbound").as_dict()
    assert {k: got[k] for k in expect} == expect, got


@pytest.mark.parametrize(
    ("scenario", "came_in", "offline", "expect"),
    [
        ("sent_twice_as_the_offline_replay_does_is_explained",
         ["a", "a"], [("a", "send", None, ()), ("a", "send", None, ())],
         {"ids_sent_again": 1, "ids_sent_again_unexplained": 0, "input_repeated": 0,
          "different": 0, "ok": True}),
        ("sent_twice_where_the_offline_replay_suppresses_the_copy",
         ["a", "a"], [("a", "send", None, ()), ("a", "suppress", "duplicate_message", ())],
         {"ids_sent_again": 1, "ids_sent_again_unexplained": 1, "ok": False}),
        ("a_copy_its_producer_wrote_twice_is_not_compared",
         ["a", "a"], [("a", "send", None, ())],
         {"input_repeated": 1, "different": 0, "ids_sent_again_unexplained": 0}),
    ],
)  # fmt: skip
def test_verify_against_the_offline_replay_explains_repeats_the_contract_lets_through(
    scenario: str, came_in: list[str], offline: list[Any], expect: dict[str, object]
) -> None:
    from streams.ops.verify import conserve

    sent = [_send("a"), _send("a", "2026-11-21T10:00:00Z")]
    got = conserve([_in(m) for m in came_in], sent, [], [], "x.outbound", offline=offline)
    assert {k: got.as_dict()[k] for k in expect} == expect, got.as_dict()
    assert ("NOT OK" in got.render()) is not expect.get("ok", got.ok)
