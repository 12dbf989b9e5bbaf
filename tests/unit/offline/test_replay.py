"""``trigger-sanity replay --offline`` on a history written only from the contract."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import orjson
import pytest

from streams.cli.main import main
from streams.contract.history import write_history
from streams.offline.generator import generate
from tests.helpers import DATA

# Derived by hand from the rules table of docs/contract.md, not from the code's output.
CONTRACT_DECISIONS = [
    ("m-1", "suppress", "cart_already_purchased", []),  # purchase at D = 10:05 counts
    ("m-2", "send", None, []),
    ("m-2", "suppress", "duplicate_message", []),
    ("m-3", "suppress", "consent_withdrawn", []),
    ("m-4", "suppress", "stale_trigger", []),  # reached Kafka 25h after created_at
    ("m-5", "suppress", "welcome_back_to_new_customer", []),
    ("m-6", "suppress", "welcome_to_existing_customer", []),
    ("m-7", "suppress", "review_request_for_returned_order", []),  # returned in two parts
    ("m-8", "suppress", "win_back_active_customer", []),
    ("m-9", "rewrite", "recommends_returned_product", ["SKU-R"]),
    ("m-10", "suppress", "recommends_recent_purchase", []),
    ("m-11a", "send", None, []),
    ("m-11", "suppress", "duplicate_content", []),  # same payload, keys in another order
    ("m-12a", "send", None, []),
    ("m-12b", "send", None, []),
    ("m-12c", "send", None, []),
    ("m-12", "suppress", "frequency_cap", []),
    ("m-13", "send", None, []),
    ("m-14", "send", None, []),  # transactional: consent not checked
    ("m-15", "send", None, []),  # replenishment is never stripped of recent purchases
]


def _read(path: Path) -> list[tuple[str, str, str | None, list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return sorted(
            (d["message_id"], d["action"], d["rule"], d["removed_skus"])
            for d in map(orjson.loads, fh.read().splitlines())
        )


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_contract_history_gives_contract_decisions(
    tmp_path: Path, compressed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    src = DATA / "contract_history.jsonl"
    if compressed:
        history = tmp_path / "h.jsonl.gz"
        history.write_bytes(gzip.compress(src.read_bytes()))
        out = tmp_path / "decisions.jsonl.gz"
    else:
        history = tmp_path / "h.jsonl"
        shutil.copy(src, history)
        out = tmp_path / "decisions.jsonl"
    assert main(["replay", str(history), "--offline", "--out", str(out)]) == 0
    assert _read(out) == sorted(CONTRACT_DECISIONS)
    printed = capsys.readouterr().out
    assert "frequency_cap" in printed and "unreadable: 2 (kept going)" in printed
    assert "line 38: not JSON" in printed
    assert "line 37 (purchases): items.0.sku: Field required" in printed


def test_every_decision_line_has_the_contract_fields(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    assert (
        main(["replay", str(DATA / "contract_history.jsonl"), "--offline", "--out", str(out)]) == 0
    )
    for line in out.read_bytes().splitlines():
        d = orjson.loads(line)
        # send_at: when it may go (its deadline: nothing in this history is held longer)
        assert set(d) == {"message_id", "customer_id", "action", "rule", "removed_skus",
                          "send_at"}  # fmt: skip
        assert d["send_at"].endswith("Z")


def test_generated_history_is_deterministic_and_covers_every_rule(tmp_path: Path) -> None:
    a, b = generate(300, seed=3), generate(300, seed=3)
    assert a == b
    path = tmp_path / "g.jsonl"
    write_history(path, a)
    out = tmp_path / "d.jsonl"
    assert main(["replay", str(path), "--offline", "--out", str(out)]) == 0
    rules = {d[2] for d in _read(out)}
    from streams.core.policy import RULE_IDS
    from streams.core.vocabulary import CONFIGURED

    assert set(RULE_IDS) - CONFIGURED <= rules, set(RULE_IDS) - rules
    assert {d[1] for d in _read(out)} == {"send", "rewrite", "suppress"}


def test_file_order_within_a_topic_matters_not_across_topics(tmp_path: Path) -> None:
    """Each topic's records in file order are its stream; how topics interleave does not matter."""
    lines = (DATA / "contract_history.jsonl").read_bytes().splitlines()
    by_topic: dict[str, list[bytes]] = {}
    for line in lines:
        try:
            topic = orjson.loads(line)["value"] and orjson.loads(line)["topic"]
        except orjson.JSONDecodeError:
            continue
        by_topic.setdefault(topic, []).append(line)
    grouped = tmp_path / "grouped.jsonl"  # all outbound first, then the rest: worst case
    order = ["outbound", "purchases", "returns", "sessions", "consents"]
    grouped.write_bytes(b"\n".join(x for t in order for x in by_topic.get(t, [])) + b"\n")
    out = tmp_path / "d.jsonl"
    assert main(["replay", str(grouped), "--offline", "--out", str(out)]) == 0
    assert _read(out) == sorted(CONTRACT_DECISIONS)


def test_out_of_order_records_within_a_topic_can_only_be_late(tmp_path: Path) -> None:
    """A purchase listed after a later purchase is read too late for the message it contradicts."""
    from tests.helpers import msg, purchase

    history = tmp_path / "ooo.jsonl"
    write_history(
        history,
        [
            purchase("2026-11-20T12:00:00Z", ["SKU-Z"], cid="c-other"),
            purchase("2026-11-20T09:00:00Z", ["SKU-1"]),  # out of order within purchases
            msg("m", "welcome", "2026-11-20T10:00:00Z"),
        ],
    )
    out, late = tmp_path / "d.jsonl", tmp_path / "late.jsonl"
    assert (
        main(
            [
                *("replay", str(history), "--offline", "--out", str(out)),
                *("--late-out", str(late), "--partitions", "1"),
            ]
        )
        == 0
    )
    assert _read(out) == [("m", "send", None, [])]
    found = [orjson.loads(x) for x in late.read_bytes().splitlines()]
    assert [(f["message_id"], f["rule"]) for f in found] == [("m", "welcome_to_existing_customer")]


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["replay", str(tmp_path / "nope.jsonl"), "--offline", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "cannot open history file" in capsys.readouterr().err
