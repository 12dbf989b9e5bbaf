"""The house rules a reader relies on: every module of the package fits in one reading
(at most 600 lines), so a concept that outgrows it is split into a module of its own."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 600


def test_no_module_of_the_package_is_over_600_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "streams").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > LIMIT
    }
    assert not too_long, f"split these (one module per concept): {too_long}"
