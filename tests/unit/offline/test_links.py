"""Identity links through the offline replay (the worker's processor, 8 partitions): the
alias and its customer on different partitions, facts copied across, decided by event
time whatever order the records come in."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from streams.contract.history import write_history
from streams.contract.partitioning import partition_for
from streams.core.policy import DEFAULT_POLICY
from streams.offline.report import collect

PARTS = 8
DAY = "2026-11-20"


def _apart(prefix: str, other: str) -> str:
    """An id of ``prefix`` on another partition than ``other``."""
    return next(
        f"{prefix}{i}"
        for i in range(100)
        if partition_for(f"{prefix}{i}", PARTS) != partition_for(other, PARTS)
    )


ACCOUNT = "c-42"
GUEST = _apart("g-", ACCOUNT)
OTHER = next(
    f"c-{i}"
    for i in range(100, 200)
    if partition_for(f"c-{i}", PARTS) not in {partition_for(x, PARTS) for x in (ACCOUNT, GUEST)}
)


def at(hm: str) -> str:
    return f"{DAY}T{hm}:00Z"


def rec(topic: str, value: dict[str, Any], ts: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"topic": topic, "value": value}
    if ts is not None:
        line["timestamp"] = ts
    return line


def link(eid: str, alias: str, target: str, hm: str, kind: str = "link") -> dict[str, Any]:
    v = {"event_id": eid, "customer_id": alias, "occurred_at": at(hm), "linked_to": target,
         "kind": kind, "source": "checkout"}  # fmt: skip
    return rec("identities", v)


def purchase(eid: str, cid: str, hm: str) -> dict[str, Any]:
    item = {"sku": "SKU-1", "quantity": 1, "unit_price": "9.99"}
    v = {"event_id": eid, "customer_id": cid, "occurred_at": at(hm), "order_id": f"o-{eid}",
         "items": [item], "currency": "EUR"}  # fmt: skip
    return rec("purchases", v)


def consent(eid: str, cid: str, hm: str, status: str, channel: str = "email") -> dict[str, Any]:
    v = {"event_id": eid, "customer_id": cid, "occurred_at": at(hm), "channel": channel,
         "status": status}  # fmt: skip
    return rec("consents", v)


def cart(mid: str, cid: str, hm: str, channel: str = "email") -> dict[str, Any]:
    v = {"message_id": mid, "customer_id": cid, "created_at": at(hm), "trigger": "abandoned_cart",
         "channel": channel, "context": {"cart_id": "cart-1", "cart_updated_at": at("09:59"),
                                         "skus": ["SKU-1"]}}  # fmt: skip
    return rec("outbound", v)


def tick(hm: str) -> list[dict[str, Any]]:
    """Every stream of every partition moves past ``hm`` (someone else's activity)."""
    return [
        purchase(f"p-tick-{hm}", OTHER, hm),
        rec(
            "sessions",
            {
                "event_id": f"s-tick-{hm}",
                "customer_id": OTHER,
                "occurred_at": at(hm),
                "session_id": "s",
                "kind": "started",
            },
        ),
    ]


def decide(tmp_path: Path, lines: list[dict[str, Any]], name: str = "h") -> dict[str, Any]:
    path = tmp_path / f"{name}.jsonl"
    write_history(path, lines)
    got, summary = collect(path, DEFAULT_POLICY, PARTS)
    out: dict[str, Any] = {d.message_id: (d.action, d.rule, d.reason) for d in got.decisions}
    out["refused"] = sorted((o.link.event_id, o.error) for o in got.refused)
    assert not summary.unreadable, summary.unreadable
    return out


def test_ids_are_on_different_partitions() -> None:
    parts = {partition_for(x, PARTS) for x in (ACCOUNT, GUEST, OTHER)}
    assert len(parts) == 3


def test_a_guest_purchase_linked_before_the_deadline_suppresses_the_account_cart_mail(
    tmp_path: Path,
) -> None:
    """The link is read after the cart mail (held) and after the purchase: re-checked."""
    lines = [cart("m-1", ACCOUNT, "10:00"), purchase("p-1", GUEST, "10:02"),
             link("i-1", GUEST, ACCOUNT, "10:03"), *tick("10:30")]  # fmt: skip
    got = decide(tmp_path, lines)
    action, rule, reason = got["m-1"]
    assert (action, rule) == ("suppress", "cart_already_purchased")
    assert f"purchase p-1 by {GUEST}, linked to {ACCOUNT} at {DAY} 10:03 UTC" in reason
    unlinked = decide(tmp_path, [x for x in lines if x["topic"] != "identities"], "u")
    assert unlinked["m-1"][:2] == ("send", None)


def test_a_message_to_the_alias_is_decided_against_the_whole_group(tmp_path: Path) -> None:
    lines = [link("i-1", GUEST, ACCOUNT, "09:00"), cart("m-1", GUEST, "10:00"),
             purchase("p-1", ACCOUNT, "10:02"), *tick("10:30")]  # fmt: skip
    assert decide(tmp_path, lines)["m-1"][:2] == ("suppress", "cart_already_purchased")


def test_a_link_after_the_deadline_changes_nothing(tmp_path: Path) -> None:
    lines = [cart("m-1", ACCOUNT, "10:00"), purchase("p-1", GUEST, "10:02"),
             link("i-1", GUEST, ACCOUNT, "10:06"), *tick("10:30")]  # fmt: skip
    assert decide(tmp_path, lines)["m-1"][:2] == ("send", None)


def test_a_link_read_after_its_stream_passed_the_deadline_is_late(tmp_path: Path) -> None:
    """Event time before the deadline, but the guest's partition's identities stream was at
    10:30 already (another guest there was linked at 10:30)."""
    near = next(f"g-x{i}" for i in range(100)
                if partition_for(f"g-x{i}", PARTS) == partition_for(GUEST, PARTS))  # fmt: skip
    lines = [cart("m-1", ACCOUNT, "10:00"), purchase("p-1", GUEST, "10:02"),
             link("i-0", near, "c-x", "10:30"), link("i-1", GUEST, ACCOUNT, "10:03"),
             *tick("10:40")]  # fmt: skip
    assert decide(tmp_path, lines)["m-1"][:2] == ("send", None)


def test_an_unlink_before_the_purchase_keeps_the_guest_apart(tmp_path: Path) -> None:
    lines = [link("i-1", GUEST, ACCOUNT, "09:00"), link("i-2", GUEST, ACCOUNT, "10:01", "unlink"),
             cart("m-1", ACCOUNT, "10:00"), purchase("p-1", GUEST, "10:02"),
             *tick("10:30")]  # fmt: skip
    assert decide(tmp_path, lines)["m-1"][:2] == ("send", None)


CHAIN_ID = _apart("c-9", ACCOUNT)


def test_every_order_of_a_chain_gives_the_same_decisions(tmp_path: Path) -> None:
    """g -> c-42 -> c-9x: the purchase by the guest counts for the chain's far end."""
    events = [link("i-1", GUEST, ACCOUNT, "09:00"), link("i-2", ACCOUNT, CHAIN_ID, "09:30"),
              purchase("p-1", GUEST, "10:02")]  # fmt: skip
    want = None
    for i, order in enumerate(itertools.permutations(events)):
        lines = [cart("m-1", CHAIN_ID, "10:00"), cart("m-2", GUEST, "10:00"), *order,
                 *tick("10:30")]  # fmt: skip
        got = decide(tmp_path, lines, f"p{i}")
        if want is None:
            want = got
            assert got["m-1"][:2] == ("suppress", "cart_already_purchased")
        assert got == want


@pytest.mark.parametrize(
    ("scenario", "lines", "want"),
    [
        (
            "a_withdrawal_by_the_account_holds_for_the_guest",
            [consent("k-1", ACCOUNT, "08:00", "withdrawn"),
             consent("k-2", GUEST, "08:30", "granted"),
             link("i-1", GUEST, ACCOUNT, "09:00"), cart("m-1", GUEST, "10:00")],
            ("suppress", "consent_withdrawn"),
        ),
        (
            "a_grant_by_the_guest_does_not_lift_the_account_withdrawal",
            [consent("k-1", ACCOUNT, "08:00", "withdrawn"), link("i-1", GUEST, ACCOUNT, "09:00"),
             consent("k-2", GUEST, "09:30", "granted"), cart("m-1", ACCOUNT, "10:00")],
            ("suppress", "consent_withdrawn"),
        ),
        (
            "a_withdrawal_by_the_guest_holds_for_the_account",
            [link("i-1", GUEST, ACCOUNT, "09:00"),
             consent("k-1", GUEST, "09:30", "withdrawn", "sms"),
             cart("m-1", ACCOUNT, "10:00", "sms")],
            ("suppress", "consent_withdrawn"),
        ),
        (
            "a_withdrawal_on_another_channel_changes_nothing",
            [link("i-1", GUEST, ACCOUNT, "09:00"),
             consent("k-1", GUEST, "09:30", "withdrawn", "sms"),
             cart("m-1", ACCOUNT, "10:00", "email")],
            ("send", None),
        ),
    ],
)  # fmt: skip
def test_consent_is_never_widened_by_a_link(
    tmp_path: Path, scenario: str, lines: list[dict[str, Any]], want: tuple[str, str | None]
) -> None:
    assert decide(tmp_path, [*lines, *tick("10:30")])["m-1"][:2] == want


def test_refused_links_are_dead_lettered_once_with_the_reason(tmp_path: Path) -> None:
    lines = [link("i-1", GUEST, ACCOUNT, "09:00"), link("i-2", ACCOUNT, CHAIN_ID, "09:10"),
             link("i-3", CHAIN_ID, GUEST, "09:20"), link("i-4", "g-nobody", ACCOUNT, "09:30",
                                                         "unlink"),
             cart("m-1", ACCOUNT, "10:00"), *tick("10:30")]  # fmt: skip
    refused = decide(tmp_path, lines)["refused"]
    assert [eid for eid, _ in refused] == ["i-3", "i-4"]
    assert "would make a cycle" in refused[0][1] and "not linked" in refused[1][1]


def test_a_generated_history_with_guest_checkouts_decides_as_its_truth(tmp_path: Path) -> None:
    """2,000 realistic customers, a third of the purchases by linked guests, plus the link
    stories: every decision is the one the truth requires, and only links made some."""
    from streams.offline.report import read_truth, verdicts
    from streams.offline.scenarios import write_realistic

    history, truth_path = tmp_path / "h.jsonl", tmp_path / "t.jsonl"
    write_realistic(history, truth_path, 2_000, seed=77, links=True)
    lines = history.read_bytes().splitlines()
    purchases = [x for x in lines if b'"topic":"purchases"' in x]
    by_guest = [x for x in purchases if b'"customer_id":"g' in x]
    assert len(by_guest) * 3 >= len(purchases) * 0.9, (len(by_guest), len(purchases))
    truth = read_truth(truth_path)
    got, _summary = collect(history, DEFAULT_POLICY, PARTS)
    decided = verdicts(got.decisions)
    wrong = {m: (decided.get(m), want) for m, want in truth.items() if decided.get(m) != want}
    assert not wrong, f"{len(wrong)} of {len(truth)} differ, e.g. {list(wrong.items())[:5]}"
    assert {o.link.event_id.rsplit("-", 1)[0] for o in got.refused} == {
        f"i-l{i:05d}" for i in range(5, 120, 7)
    }  # the cycles' closing links, and nothing else
    named = [d for d in got.decisions if d.reason and ", linked to " in d.reason]
    assert len(named) >= 50  # suppressions only a link made possible say so
    unlinked = tmp_path / "u.jsonl"
    unlinked.write_bytes(b"\n".join(x for x in lines if b'"topic":"identities"' not in x))
    without, _ = collect(unlinked, DEFAULT_POLICY, PARTS)
    differ = {m for m, v in verdicts(without.decisions).items() if truth.get(m) != v}
    assert len(differ) >= len(named)  # the truth needs the links


# ---------------------------------------------------------------- long horizons, hubs


def day(d: int, hm: str = "10:00") -> str:
    from datetime import date, timedelta

    return f"{date(2026, 9, 1) + timedelta(days=d)}T{hm}:00Z"


def p_at(eid: str, cid: str, ts: str, order: str | None = None) -> dict[str, Any]:
    item = {"sku": "SKU-1", "quantity": 1, "unit_price": "9.99"}
    return rec("purchases", {"event_id": eid, "customer_id": cid, "occurred_at": ts,
                             "order_id": order or f"o-{eid}", "items": [item],
                             "currency": "EUR"})  # fmt: skip


def s_at(eid: str, cid: str, ts: str) -> dict[str, Any]:
    return rec("sessions", {"event_id": eid, "customer_id": cid, "occurred_at": ts,
                            "session_id": eid, "kind": "started"})  # fmt: skip


def l_at(eid: str, alias: str, target: str, ts: str) -> dict[str, Any]:
    v = {"event_id": eid, "customer_id": alias, "occurred_at": ts, "linked_to": target}
    return rec("identities", v)


def ticks(ts: str) -> list[dict[str, Any]]:
    return [p_at(f"p-t-{ts}", OTHER, ts), s_at(f"s-t-{ts}", OTHER, ts)]


def replayed(tmp_path: Path, lines: list[dict[str, Any]], name: str, sweep_every: int) -> Any:
    from streams.offline.replay import replay_offline
    from streams.offline.report import Collected

    path = tmp_path / f"{name}.jsonl"
    write_history(path, lines)
    got = Collected()
    replay_offline(path, DEFAULT_POLICY, None, partitions=PARTS, sweep_every=sweep_every,
                   on_output=got)  # fmt: skip
    return {d.message_id: (d.action, d.rule) for d in got.decisions}, got


def test_a_guest_purchase_two_months_old_makes_the_account_existing_whatever_the_sweeps(
    tmp_path: Path,
) -> None:
    """The purchase left the guest's lists long before the link (35 days): its epoch's
    first purchase still counts, and sweeping every record or never decides alike."""
    welcome = rec("outbound", {"message_id": "m-w", "customer_id": ACCOUNT,
                               "created_at": day(60), "trigger": "welcome", "channel": "email",
                               "context": {}})  # fmt: skip
    lines = [p_at("p-1", GUEST, day(0)), *ticks(day(58)), l_at("i-1", GUEST, ACCOUNT, day(59)),
             welcome, *ticks(day(61))]  # fmt: skip
    never, _ = replayed(tmp_path, lines, "never", 0)
    always, _ = replayed(tmp_path, lines, "always", 1)
    assert never["m-w"] == always["m-w"] == ("suppress", "welcome_to_existing_customer")


def test_a_review_request_for_a_guest_order_returned_40_days_ago(tmp_path: Path) -> None:
    """Orders are kept 180 days: the guest's returned order counts for the account."""
    ret = rec("returns", {"event_id": "r-1", "customer_id": GUEST, "occurred_at": day(1),
                          "order_id": "o-1", "items": [{"sku": "SKU-1", "quantity": 1}],
                          "reason": "damaged"})  # fmt: skip

    def review(mid: str, cid: str) -> dict[str, Any]:
        return rec("outbound", {"message_id": mid, "customer_id": cid, "created_at": day(45),
                                "trigger": "review_request", "channel": "email",
                                "context": {"order_id": "o-1"}})  # fmt: skip

    lines = [p_at("p-1", GUEST, day(0), "o-1"), ret, l_at("i-1", GUEST, ACCOUNT, day(2)),
             *ticks(day(44)), review("m-a", ACCOUNT), review("m-g", GUEST),
             *ticks(day(46))]  # fmt: skip
    for sweep in (0, 1):
        got, _ = replayed(tmp_path, lines, f"rr{sweep}", sweep)
        want = ("suppress", "review_request_for_returned_order")
        assert got["m-a"] == got["m-g"] == want, sweep


def test_a_shared_device_linked_to_everyone_copies_only_its_group(tmp_path: Path) -> None:
    """200 customers, 5 purchases each, all linked to one device: 181 links are refused
    (max_group 20), and only the 19 taken customers' facts travel."""
    lines = [p_at(f"p-{i}-{j}", f"c-{i}", day(0, f"10:{j:02d}")) for i in range(200)
             for j in range(5)]  # fmt: skip
    lines += [l_at(f"i-{i}", f"c-{i}", "dev-1", day(1, f"{10 + i // 60:02d}:{i % 60:02d}"))
              for i in range(200)]  # fmt: skip
    engines: list[Any] = []
    from streams.offline import decide

    orig = decide._FilePass.__init__

    def init(self: Any, *a: Any, **k: Any) -> None:
        orig(self, *a, **k)
        engines.append(self.engine)

    decide._FilePass.__init__ = init  # type: ignore[method-assign]
    try:
        _, got = replayed(tmp_path, lines, "hub", 0)
    finally:
        decide._FilePass.__init__ = orig  # type: ignore[method-assign]
    assert len(got.refused) == 181
    assert engines[0].counts["link_copies"] <= 19 * 5 * 7


def test_the_report_and_the_state_page_show_what_links_did(tmp_path: Path) -> None:
    """The report counts the suppressions only a link made possible and lists refused
    links; ``state`` shows the group and where each link came from."""
    from streams.core.engine import Engine
    from streams.core.identity import Link
    from streams.core.store import MemoryStore
    from streams.offline.report import render
    from streams.worker.state_report import report

    lines = [cart("m-1", ACCOUNT, "10:00"), purchase("p-1", GUEST, "10:02"),
             link("i-1", GUEST, ACCOUNT, "10:03"), link("i-2", ACCOUNT, GUEST, "10:04"),
             *tick("10:30")]  # fmt: skip
    path = tmp_path / "r.jsonl"
    write_history(path, lines)
    got, summary = collect(path, DEFAULT_POLICY, PARTS)
    page = render("links", got, summary, DEFAULT_POLICY)
    assert "Made possible by identity links" in page
    assert "1 suppressions or rewrites used evidence of a linked id" in page
    assert "0 links were refused" in page  # i-2 says again a pair linked already
    engine = Engine(DEFAULT_POLICY, MemoryStore(), PARTS)
    k = Link("i-1", GUEST, ACCOUNT, 1_000, source="checkout", origin=("identities", 3, 7))
    engine.ingest(partition_for(GUEST, PARTS), "identities", GUEST, 1_000, k, 1_000,
                  ("identities:3", 7))  # fmt: skip
    from streams.core.state import CustomerState

    shown = report(ACCOUNT, CustomerState(), 1, engine.links_of(ACCOUNT))
    assert list(shown["group"]) == [GUEST]
    assert shown["links"][0]["read_from"] == "identities[3]@7"
    assert shown["links"][0]["refused"] is None and shown["links"][0]["source"] == "checkout"


def test_a_guest_purchase_read_after_the_account_mail_was_decided_is_late_evidence(
    tmp_path: Path,
) -> None:
    """A contradicting event read after the decision has its late-evidence record, whether
    the account or its linked guest made it; the decision stands."""
    from streams.offline.replay import replay_offline
    from streams.offline.report import Collected

    def near(prefix: str, of: str) -> str:
        want = partition_for(of, PARTS)
        return next(
            f"{prefix}{i}" for i in range(500) if partition_for(f"{prefix}{i}", PARTS) == want
        )

    def lines(buyer: str) -> list[dict[str, Any]]:
        return [link("i-1", GUEST, ACCOUNT, "09:00"), cart("m-1", ACCOUNT, "10:00"),
                purchase("p-g", near("g-x", GUEST), "10:30"),
                purchase("p-a", near("c-y", ACCOUNT), "10:30"), *tick("10:30"),
                purchase("p-1", buyer, "10:02"),  # read after m-1 was decided
                *tick("11:00")]  # fmt: skip

    for buyer in (ACCOUNT, GUEST):
        path = tmp_path / f"{buyer}.jsonl"
        write_history(path, lines(buyer))
        got = Collected()
        replay_offline(path, DEFAULT_POLICY, None, partitions=PARTS, on_output=got)
        assert [(d.message_id, d.action) for d in got.decisions] == [("m-1", "send")]
        assert [(f.sent.message_id, f.rule, f.event[1]) for f in got.late] == [
            ("m-1", "cart_already_purchased", "p-1")
        ], buyer
