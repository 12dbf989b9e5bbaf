"""Idleness from what the consumer knows: a stream is idle only when it is read to the end
offset of a recent fetch answer. A broker that stopped answering, a stream whose end moved
on while the batch read another, or a peer whose markers stopped coming, is never taken
for idleness (which would let stream time pass events still on their way)."""

from __future__ import annotations

import pytest

from streams.core.engine import Engine
from streams.core.policy import DEFAULT_POLICY
from streams.core.store import MemoryStore
from streams.core.vocabulary import INPUT_KINDS
from streams.processing.processor import Processor
from streams.processing.watermarks import TP, Answering, Watermarks


class FakeFetches:
    def __init__(self) -> None:
        self.hw: dict[TP, int] = {}
        self.stale: set[TP] = set()
        self.at: dict[TP, int] = {}

    def highwater(self, tp: TP) -> int | None:
        return self.hw.get(tp)

    def fresh(self, tp: TP) -> bool:
        return tp not in self.stale

    def position(self, tp: TP) -> int | None:
        return self.at.get(tp)


def _watermarks(partitions: int = 1, expiry: float = 3.0) -> Watermarks:
    engine = Engine(DEFAULT_POLICY, MemoryStore(), partitions, rerouted=partitions > 1)
    processor = Processor(engine, {k: k for k in INPUT_KINDS}, lambda _t: partitions,
                          reroute_topic="rr")  # fmt: skip
    return Watermarks(processor, partitions, 0.0, 0.1, "rr", INPUT_KINDS, expiry)


def _everything_read(f: FakeFetches, p: int = 0) -> None:
    for k in INPUT_KINDS:
        f.hw[(k, p)] = 10
        f.at[(k, p)] = 10


@pytest.mark.parametrize(
    ("scenario", "change", "idle"),
    [
        ("read to a recent end offset", None, True),
        ("the broker stopped answering its fetches", "stale", False),
        ("its end moved on while the batch read another stream", "moved", False),
        ("never read and its start not known yet", "unknown", False),
    ],
)
def test_a_stream_the_batch_did_not_read_is_looked_at_again(
    scenario: str, change: str | None, idle: bool
) -> None:
    wm = _watermarks()
    f = FakeFetches()
    _everything_read(f)
    purchases = ("purchases", 0)
    if change == "stale":
        f.stale.add(purchases)
    elif change == "moved":
        f.hw[purchases] = 12
    elif change == "unknown":
        del f.at[purchases]
    wm.after_batch({("outbound", 0): 9}, f, (), {0}, 0)
    assert wm.engine.clock(0).idle("purchases") is idle, scenario
    assert wm.engine.clock(0).idle("outbound") is True


def test_a_stream_caught_up_before_an_outage_is_not_idle_after_it() -> None:
    """Before: caught up, idle. The broker goes away; records were appended meanwhile.
    After: the first batch is of another stream; the first one's end offset is known to
    have moved, so it is busy, and stream time waits for it."""
    wm = _watermarks()
    f = FakeFetches()
    _everything_read(f)
    wm.after_batch({("purchases", 0): 9}, f, (), {0}, 0)
    assert wm.engine.clock(0).all_idle
    for k in INPUT_KINDS:
        f.stale.add((k, 0))
    wm.after_batch({("outbound", 0): 9}, f, (), {0}, 0)
    assert not any(wm.engine.clock(0).idle(k) for k in INPUT_KINDS)
    f.stale.clear()
    f.hw[("purchases", 0)] = 15
    wm.after_batch({("outbound", 0): 10}, f, (), {0}, 0)
    assert not wm.engine.clock(0).idle("purchases")


def test_a_peer_whose_markers_stopped_coming_is_busy_again() -> None:
    wm = _watermarks(partitions=2, expiry=0.0)
    clock = wm.engine.clock(0)
    wm.processor.on_record(
        "rr", 0, 0, 0, None,
        b'{"src":1,"at":1,"f":{"purchases":[5,true],"returns":[5,true],"sessions":[5,true],'
        b'"consents":[5,true],"outbound":[5,true],"identities":[5,true]}}', 0, {"ts-marker": b"1"},
    )  # fmt: skip
    assert clock.all_idle is False  # its own streams are not idle yet
    assert not any(w.endswith("@1") for w in clock.waiting_for())  # the peer's: idle
    f = FakeFetches()
    _everything_read(f)
    wm.after_batch({("outbound", 0): 9}, f, (), {0}, 0)  # expiry 0: every marker is old
    assert {w for w in clock.waiting_for() if w.endswith("@1")} == {f"{k}@1" for k in INPUT_KINDS}


def test_a_stream_a_replay_announced_open_is_not_idle_until_its_last_record() -> None:
    """``trigger-sanity replay`` says on each record which streams of its partition have
    records still to come: those are busy however caught up they are (a full-speed
    replay is read as the offline replay reads the file), until their own last record."""
    wm = _watermarks()
    f = FakeFetches()
    _everything_read(f)
    clock = wm.engine.clock(0)
    opened = {"ts-open": b"r1;purchases,outbound"}
    wm.processor.on_record("outbound", 0, 9, 0, b"c-42", b"{}", 0, opened)  # unreadable: ok
    wm.after_batch({("outbound", 0): 9}, f, (), {0}, 0)
    assert not clock.idle("purchases") and not clock.idle("outbound")
    assert clock.idle("returns")  # never announced: idle as usual
    last = {"ts-open": b"r1;outbound"}  # the last purchase: purchases closes, outbound stays
    wm.processor.on_record("purchases", 0, 9, 0, b"c-42", b"{}", 0, last)
    wm.after_batch({("purchases", 0): 9}, f, (), {0}, 0)
    assert clock.idle("purchases") and not clock.idle("outbound")
    # an outbound record from earlier in the file, read late from its slower stream, still
    # names purchases open: older news, purchases stays at its end
    wm.processor.on_record("outbound", 0, 10, 0, b"c-42", b"{}", 0, opened)
    wm.after_batch({("outbound", 0): 10}, f, (), {0}, 0)
    assert clock.idle("purchases") and not clock.idle("outbound")
    wm.processor.on_record("outbound", 0, 11, 0, b"c-42", b"{}", 0, {"ts-open": b"r1;"})
    f.hw[("outbound", 0)] = 12
    wm.after_batch({("outbound", 0): 11}, f, (), {0}, 0)
    assert clock.all_idle
    # a second replay of the file opens the streams again
    wm.processor.on_record("outbound", 0, 12, 0, b"c-42", b"{}", 0, {"ts-open": b"r2;purchases"})
    f.hw[("outbound", 0)] = 13
    wm.after_batch({("outbound", 0): 12}, f, (), {0}, 0)
    assert not clock.idle("purchases")


@pytest.mark.parametrize(
    ("scenario", "answers", "trusted"),
    [
        # (last answer ms, now ms) at successive idle checks of one partition
        ("never answered yet", [(None, 0)], [False]),
        ("answering since the start: no outage", [(100, 500), (1400, 1900)], [True, True]),
        (
            "the broker away, then back: not trusted until the grace has passed",
            [(1000, 1500), (1000, 5000), (9000, 9100), (38000, 39000), (39100, 39200)],
            [True, False, False, False, True],
        ),
        (
            "away again during the grace: the grace starts over",
            [
                (1000, 1500),
                (1000, 5000),
                (9000, 9100),
                (9000, 20000),
                (21000, 21100),
                (40000, 40100),
                (51000, 51200),
            ],
            [True, False, False, False, False, False, True],
        ),
        ("first answered late (a worker starting): no grace", [(60000, 60100)], [True]),
    ],
)
def test_a_partition_is_trusted_caught_up_only_a_grace_after_the_broker_came_back(
    scenario: str, answers: list[tuple[int | None, int]], trusted: list[bool]
) -> None:
    """Producers reconnect after an outage with backoff and send what they buffered only
    then: a partition that looks caught up right after the broker came back is not."""
    a = Answering(within=1.0, grace=30.0)
    got = [a.fresh("p", last, now) for last, now in answers]
    assert got == trusted, scenario
    assert a.in_grace() == (0 if trusted[-1] or answers[-1][0] is None else 1), scenario


def test_without_a_grace_answers_are_trusted_as_soon_as_they_come_again() -> None:
    a = Answering(within=1.0, grace=0.0)
    assert [a.fresh("p", last, now) for last, now in [(0, 500), (0, 5000), (6000, 6100)]] == [
        True, False, True,
    ]  # fmt: skip


def test_a_worker_restarted_by_an_outage_trusts_no_partition_until_the_grace_passed() -> None:
    """The worker restarts itself when a transaction fails with the broker away: the new
    process never saw the outage, yet producers are still sending what they buffered."""
    a = Answering(within=1.0, grace=30.0)
    a.after_outage(1000)
    assert a.in_grace() == 1
    # answered at once, every partition, and still not trusted within the grace
    assert [a.fresh(p, 1500, 1600) for p in ("p", "q")] == [False, False]
    assert a.fresh("p", 30_950, 31_000) is True  # the grace has passed
    assert a.fresh("q", 31_050, 31_100) is True and a.in_grace() == 0


@pytest.mark.parametrize(
    ("silence_ms", "outage"),
    [(2_000, False), (5_000, True)],
    ids=["a-busy-second-or-two", "broker-gone"],
)
def test_the_watch_between_idle_checks_takes_only_a_long_silence_for_an_outage(
    silence_ms: int, outage: bool
) -> None:
    """The idle check waits for the broker, so with the broker down it runs again only
    once it is back; the watch must see the outage while it lasts, without taking a
    backlog's busy second for one."""
    a = Answering(within=1.0, grace=30.0)
    a.silent("p", 10_000, 10_000 + silence_ms, after_ms=4_000)
    assert bool(a.in_grace()) is outage
    # answered again: in the grace if it was an outage, trusted if not
    assert a.fresh("p", 20_000, 20_100) is not outage
