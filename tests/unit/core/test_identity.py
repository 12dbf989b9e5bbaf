"""The link book: groups as a function of which links a deadline sees, never of order."""

from __future__ import annotations

import itertools

import pytest

from streams.core.identity import Link, LinkBook, fact_of, fact_row
from streams.core.state import ConsentFact, PurchaseFact, ReturnFact, SessionFact

MIN = 60_000


def link(eid: str, alias: str, target: str, t: int, unlink: bool = False, arr: int = 0) -> Link:
    return Link(eid, alias, target, t * MIN, unlink, "checkout", arr * MIN)


def members(book: LinkBook, cid: str, at: int) -> set[str]:
    return set(book.group(cid, at * MIN).members)


CHAIN = [link("i-1", "g-77", "c-42", 10), link("i-2", "c-42", "c-9", 20)]


def test_links_chain_into_one_group_whichever_way_the_arrows_point() -> None:
    book = LinkBook(20)
    for k in CHAIN:
        book.add(k)
    assert members(book, "c-9", 30) == {"g-77", "c-42"}
    assert members(book, "g-77", 30) == {"c-42", "c-9"}
    assert members(book, "c-9", 15) == set()  # c-42 -> c-9 not yet in force
    assert members(book, "g-77", 15) == {"c-42"}
    assert members(book, "g-77", 5) == set()
    # the join time named for g-77 in c-9's group: the later link on its path
    assert book.group("c-9", 30 * MIN).members["g-77"].event_id == "i-2"


@pytest.mark.parametrize(
    "scenario",
    ["a_chain_with_an_unlink", "a_cycle_refused", "a_group_over_the_cap_refused"],
)
def test_every_arrival_order_of_the_same_links_gives_the_same_groups(scenario: str) -> None:
    links = {
        "a_chain_with_an_unlink": [
            *CHAIN,
            link("i-3", "g-77", "c-42", 25, unlink=True),
            link("i-4", "g-5", "c-9", 26),
        ],
        "a_cycle_refused": [*CHAIN, link("i-3", "c-9", "g-77", 30), link("i-4", "x", "g-77", 31)],
        "a_group_over_the_cap_refused": [link(f"i-{i}", f"g-{i}", "c-1", i) for i in range(1, 6)],
    }[scenario]
    ids = {i for k in links for i in (k.alias, k.target)}
    want = None
    for order in itertools.islice(itertools.permutations(links), 24):
        book = LinkBook(4)
        for k in order:
            book.add(k)
        got = (
            {(cid, at): frozenset(members(book, cid, at)) for cid in ids for at in range(0, 40)},
            {k.event_id: book.verdict(k) for k in links},
        )
        if want is None:
            want = got
        assert got == want


def test_a_cycle_is_refused_with_the_path_that_closes_it() -> None:
    book = LinkBook(20)
    cycle = link("i-3", "c-9", "g-77", 30)
    for k in (*CHAIN, cycle):
        book.add(k)
    why = book.verdict(cycle)
    assert why is not None and "would make a cycle" in why
    assert "(c-9 -> c-42 -> g-77)" in why
    assert book.verdict(CHAIN[0]) is None
    assert members(book, "c-9", 40) == {"g-77", "c-42"}  # the refused link changes nothing


def test_a_link_over_max_group_is_refused_and_names_the_size() -> None:
    book = LinkBook(3)
    links = [link(f"i-{i}", f"g-{i}", "c-1", i) for i in range(1, 4)]
    for k in links:
        book.add(k)
    assert [book.verdict(k) is None for k in links] == [True, True, False]
    why = book.verdict(links[2])
    assert why is not None and "group of 4 ids (links.max_group 3)" in why
    assert members(book, "c-1", 10) == {"g-1", "g-2"}


def test_an_unlink_ends_the_link_from_its_event_time_on() -> None:
    book = LinkBook(20)
    unlink = link("i-3", "g-77", "c-42", 25, unlink=True)
    for k in (*CHAIN, unlink):
        book.add(k)
    assert members(book, "c-42", 24) == {"g-77", "c-9"}
    assert members(book, "c-42", 25) == {"c-9"}
    assert members(book, "g-77", 26) == set()
    stray = link("i-4", "g-1", "c-1", 5, unlink=True)
    book.add(stray)
    assert "not linked" in (book.verdict(stray) or "")


def test_a_link_read_after_a_deadline_is_not_seen_by_it() -> None:
    book = LinkBook(20)
    book.add(link("i-1", "g-77", "c-42", 10, arr=50))  # event time 10, read when 50 passed
    assert members(book, "c-42", 30) == set()
    assert members(book, "c-42", 50) == {"g-77"}


def test_the_same_link_said_twice_is_taken_once() -> None:
    book = LinkBook(20)
    assert book.add(CHAIN[0]) and not book.add(CHAIN[0])
    again = link("i-9", "c-42", "g-77", 12)  # the same pair, the other way round
    book.add(again)
    assert book.verdict(again) is None and members(book, "c-42", 20) == {"g-77"}


def test_reach_is_everyone_ever_connected() -> None:
    book = LinkBook(20)
    for k in (*CHAIN, link("i-3", "g-77", "c-42", 25, unlink=True)):
        book.add(k)
    assert book.reach("c-9") == {"c-9", "c-42", "g-77"}
    assert not book.linked("c-1") and book.reach("c-1") == {"c-1"}


def test_facts_travel_unchanged() -> None:
    facts = [
        PurchaseFact("p-1", 5, "o-1", (("SKU-1", 2),), 3, 7),
        ReturnFact("r-1", 6, "o-1", (("SKU-1", 1),), 4, 8),
        SessionFact("s-1", 7, 5, 9, "Europe/Berlin"),
        ConsentFact("k-1", 8, "sms", True, 6, 10),
    ]
    for f in facts:
        assert fact_of(fact_row(f)) == f


def test_a_refused_link_never_comes_into_force_through_a_late_unlink() -> None:
    """a-b, b-c, then a-c closes a cycle and is dead-lettered. An unlink of a-b at 2, read
    late (its stream was at 5), does not bring the dead-lettered link to life later."""
    book = LinkBook(20)
    for k in (link("i-1", "a", "b", 1), link("i-2", "b", "c", 2), link("i-3", "a", "c", 3),
              link("u-1", "a", "b", 2, unlink=True, arr=5)):  # fmt: skip
        book.add(k)
    assert book.verdict(book.links["i-3"]) is not None
    assert "c" not in book.group("a", 6 * MIN).members
    assert members(book, "a", 4) == {"b", "c"} and members(book, "a", 6) == set()


def test_a_link_taken_stays_in_force_when_an_earlier_one_is_read_late() -> None:
    """max_group 2: g-1 -> c (t=3) is taken. g-2 -> c (t=2, read late at 4) comes after it
    in the order links apply, so it is the one refused, for every deadline."""
    book = LinkBook(2)
    for k in (link("i-1", "g-1", "c", 3), link("i-2", "g-2", "c", 2, arr=4)):
        book.add(k)
    assert book.verdict(book.links["i-1"]) is None
    assert book.verdict(book.links["i-2"]) is not None
    assert "c" in book.group("g-1", 3 * MIN).members
    assert "c" in book.group("g-1", 5 * MIN).members


def test_reach_follows_only_links_that_were_taken() -> None:
    """A shared device linked to everyone: the links over max_group join nobody."""
    book = LinkBook(3)
    for i in range(10):
        book.add(link(f"i-{i}", f"c-{i}", "dev-1", 10 + i))
    assert book.reach("dev-1") == {"dev-1", "c-0", "c-1"}
    assert book.reach("c-7") == {"c-7"}
