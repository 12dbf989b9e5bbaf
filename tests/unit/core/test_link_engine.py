"""Identity links in the engine across crashes and rollbacks: a link read again by its own
partition after a crash is judged there (however many partitions heard it), and a
refusal a rollback undid comes again."""

from __future__ import annotations

from streams.core.engine import Engine
from streams.core.identity import Link
from streams.core.outcomes import Refused
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore

N = 4
MIN = 60_000


def part_of(cid: str) -> int:
    return {"g": 0, "c": 1}[cid[0]]


def unlink() -> Link:  # refused: g-1 and c-1 are not linked then
    return Link("i-1", "g-1", "c-1", 10 * MIN, True, "checkout")


def test_a_link_reread_after_a_crash_is_judged_by_its_new_owner() -> None:
    # worker A owns partition 0 (the alias's), worker B owns 1..3
    a = Engine(DEFAULT_POLICY, MemoryStore(), N, rerouted=True, partition_of=part_of)
    b = Engine(DEFAULT_POLICY, MemoryStore(), N, rerouted=True, partition_of=part_of)
    a.ingest(0, "identities", "g-1", 10 * MIN, unlink(), 10 * MIN, ("identities:0", 7))
    for what, q, item in a.forwards:  # at-least-once: the broadcast was written...
        if what == "link":
            link, src, n = item
            b.hear_link(q, Link.from_row(link.row()), src, n)
    # ... then A is killed before its link rows and offsets were saved; B takes
    # partition 0 over (nothing of it in the changelog) and reads the link again
    b.load_links(0, [], None)
    b.ingest(0, "identities", "g-1", 10 * MIN, unlink(), 10 * MIN, ("identities:0", 7))
    out = b.flush(99 * MIN)
    assert [o.link.event_id for o in out if isinstance(o, Refused)] == ["i-1"]


def test_a_refusal_undone_by_a_rollback_is_dead_lettered_again() -> None:
    """The worker's _after_batch rolls the engine back when releasing fails: the refusal it
    produced was never written, so it must come again (heap entries do, judging does not)."""
    from streams.core.state import SessionFact
    from streams.core.vocabulary import INPUT_KINDS

    e = Engine(DEFAULT_POLICY, MemoryStore(), 1)
    for k in INPUT_KINDS:
        e.clock(0).set_idle(k, True)
    e.ingest(0, "identities", "g-1", 10 * MIN, unlink(), 10 * MIN, ("identities:0", 1))
    e.ingest(
        0, "sessions", "x", 30 * MIN, SessionFact("s-1", 30 * MIN), 30 * MIN, ("sessions:0", 1)
    )
    e.begin()
    first = [o for o in e.release(0, 0) if isinstance(o, Refused)]
    assert len(first) == 1
    e.rollback()  # e.g. a later step of the same _after_batch raised: nothing was written
    e.begin()
    again = [o for o in e.release(0, 0) + e.flush(0) if isinstance(o, Refused)]
    e.commit()
    assert len(again) == 1


def test_a_candidate_waits_only_for_the_links_that_reach_its_customer() -> None:
    """Live, a linked customer's candidate waits until every partition acknowledged the
    links reaching it. Links joining other people that wait too are not looked at: walking
    all of them for every candidate, every batch, made a backlog's work grow with its
    square."""
    e = Engine(DEFAULT_POLICY, MemoryStore(), N, rerouted=True, partition_of=lambda c: 1)
    e.acked_links = True  # as the worker's processor sets it (a re-route topic, 4 partitions)
    for i in range(500):  # other people's links, heard from partition 2, not acknowledged
        e.hear_link(1, Link(f"o-{i}", f"u-{i}", f"v-{i}", 5 * MIN, False, "checkout"), 2, i + 1)
    e.hear_link(1, Link("i-1", "g-1", "c-1", 5 * MIN, False, "checkout"), 2, 501)
    looked: list[int] = []
    acked = e._acked

    def counting(part: object, partition: int, source: int, n: int) -> bool:
        looked.append(n)
        return acked(part, partition, source, n)  # type: ignore[arg-type]

    e._acked = counting  # type: ignore[method-assign]
    part = e.part(1)
    assert not e.links_ok(part, 1, 20 * MIN, "c-1")
    assert looked == [501]
    for p in (0, 2, 3):  # every other partition's marker says it heard them all
        e.hear_acks(1, p, {2: 501})
    assert e.links_ok(part, 1, 20 * MIN, "c-1")
    assert e.links_ok(part, 1, 20 * MIN, "u-7")
    assert not part.waiting and not part.waiting_ids


def _live() -> Engine:
    e = Engine(DEFAULT_POLICY, MemoryStore(), N, rerouted=True, partition_of=lambda c: 1)
    e.acked_links = True
    return e


def test_a_link_heard_again_later_keeps_its_candidates_waiting_from_the_first_time() -> None:
    e = _live()
    e.hear_link(1, Link("e1", "a", "b", 10 * MIN, False, "checkout"), 2, 1)
    e.hear_link(1, Link("e1", "a", "b", 10 * MIN, False, "checkout", arr=100 * MIN), 2, 1)
    assert not e.links_ok(e.part(1), 1, 50 * MIN, "a")


def test_a_number_a_restarted_sender_gave_another_link_keeps_the_first_waiting() -> None:
    """At-least-once: a partition that broadcast link 1 and crashed before saving may give
    number 1 to another link after its restart; both wait for that acknowledgement."""
    e = _live()
    e.hear_link(1, Link("e1", "a", "b", 10 * MIN, True, "checkout"), 2, 1)  # an unlink
    e.hear_link(1, Link("e2", "a", "c", 100 * MIN, False, "checkout"), 2, 1)
    assert not e.links_ok(e.part(1), 1, 50 * MIN, "a")


def test_an_event_id_said_twice_waits_by_the_link_the_book_keeps_and_leaves_nothing() -> None:
    e = _live()
    part = e.part(1)
    e.hear_link(1, Link("e1", "a", "b", 10 * MIN, False, "checkout"), 2, 1)
    e.hear_link(1, Link("e1", "x", "y", 10 * MIN, False, "checkout"), 3, 1)
    for p in (0, 2, 3):
        e.hear_acks(1, p, {2: 1})
    assert not e.links_ok(part, 1, 50 * MIN, "a")  # (3, 1) is not acknowledged yet
    for p in (0, 2, 3):
        e.hear_acks(1, p, {2: 1, 3: 1})
    assert e.links_ok(part, 1, 50 * MIN, "a")
    assert not part.waiting and not part.waiting_ids
