"""The policy file: defaults are the contract, bad files say which key and what was expected."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.core.policy import (
    DEFAULT_POLICY,
    RULE_IDS,
    load_policy,
    policy_as_toml,
    policy_from_mapping,
)
from streams.errors import PolicyError
from tests.helpers import ROOT


def test_defaults_are_the_contract() -> None:
    p = DEFAULT_POLICY
    assert p.settle.abandoned_cart == 5 * 60_000 and p.settle.promotion == 0
    assert p.rules.stale_trigger.max_age == 24 * 3_600_000
    assert p.rules.win_back_active_customer.window == 30 * 86_400_000
    assert p.rules.recommends_returned_product.window == 30 * 86_400_000
    assert p.rules.recommends_recent_purchase.window == 14 * 86_400_000
    assert p.rules.duplicate_content.window == 24 * 3_600_000
    assert (p.rules.frequency_cap.window, p.rules.frequency_cap.limit) == (24 * 3_600_000, 3)
    assert p.rules.welcome_back_to_new_customer.min_sessions == 2
    assert all(p.is_on(r) for r in RULE_IDS)


def test_show_output_round_trips() -> None:
    assert policy_from_mapping(tomllib.loads(policy_as_toml(DEFAULT_POLICY))) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": {"frequency_cap": {"limt": 3}}}, "rules.frequency_cap.limt: unknown key"),
        ({"rules": {"frequency_cap": {"window": "3 fortnights"}}}, "rules.frequency_cap.window"),
        ({"rules": {"frequency_cap": {"limit": -1}}}, "rules.frequency_cap.limit"),
        ({"rules": {"no_such_rule": {}}}, "rules.no_such_rule: unknown key"),
        ({"settle": {"abandoned_cart": "soon"}}, "settle.abandoned_cart"),
        ({"rules": {"consent_withdrawn": {"mode": "loud"}}}, "rules.consent_withdrawn.mode"),
        ({"state": {"retention": "1d"}}, "state.retention (1d) must be at least"),
    ],
)
def test_bad_policy_names_key_and_expectation(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=r".*") as exc:
        policy_from_mapping(data, "p.toml")
    assert message in str(exc.value)


def test_partial_override_keeps_other_defaults(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(
        'version = "2026-11-21.1"\n[rules.frequency_cap]\nlimit = 5\n'
        '[settle]\nabandoned_cart = "10m"\n'
    )
    p = load_policy(f)
    assert p.version == "2026-11-21.1" and p.rules.frequency_cap.limit == 5
    assert p.rules.frequency_cap.window == 24 * 3_600_000 and p.settle.abandoned_cart == 600_000


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)


def test_cli_policy_check_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('version = "v9"\n')
    assert main(["policy", "check", str(good)]) == 0
    assert "valid (version v9)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.frequency_cap]\nlimt = 3\n")
    assert main(["policy", "check", str(bad)]) == 2
    assert "rules.frequency_cap.limt: unknown key" in capsys.readouterr().err
    assert main(["policy", "show"]) == 0
    assert "[rules.frequency_cap]" in capsys.readouterr().out


def test_shipped_example_policy_is_valid() -> None:
    root = ROOT
    p = load_policy(root / "policies" / "example.toml")
    assert p.version


def test_rule_order_is_one_list() -> None:
    """Every rule id of the vocabulary has its function of the same name, and nothing else
    does: the rules table cannot list a rule the vocabulary does not."""
    from streams.core.rules import FUNCTIONS

    assert set(FUNCTIONS) == set(RULE_IDS)
    assert all(fn.__name__ == rule_id for rule_id, fn in FUNCTIONS.items())
