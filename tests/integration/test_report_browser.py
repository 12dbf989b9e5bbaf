"""The replay report as a person opens it: headless Chromium, no network, no errors.

No broker is needed; it is here with the other tests that drive a real
external program (Debian's chromium, installed by ``.ci/run``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from streams.contract.history import write_history
from streams.core.policy import DEFAULT_POLICY
from streams.offline.generator import generate
from streams.offline.report import collect
from tests.browser import load_page
from tests.integration.conftest import ROOT


def test_the_report_loads_offline_and_shows_the_chart_and_the_per_rule_table(
    tmp_path: Path,
) -> None:
    history = tmp_path / "h.jsonl"
    write_history(history, generate(300, seed=8))
    got, summary = collect(history, DEFAULT_POLICY, 8)
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(b"".join(
        orjson.dumps({"message_id": d.message_id, "action": d.action, "rule": d.rule}) + b"\n"
        for d in got.decisions
    ))  # fmt: skip
    report = tmp_path / "report.html"
    res = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(history), "--offline",
         "--report", str(report), "--truth", str(truth), "--partitions", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    page = load_page(
        report.as_uri(),
        {
            "points": "document.querySelectorAll('#chart circle').length",
            "line": "document.querySelectorAll('#chart polyline').length",
            "rules": "Array.from(document.querySelectorAll('#rules tbody tr'))"
            ".map(tr => [tr.dataset.rule, Number(tr.children[1].textContent)])",
            "decisions": "document.getElementById('decisions').textContent",
            "precision": "Array.from(document.querySelectorAll('#accuracy .precision'))"
            ".map(td => td.textContent)",
            "recall": "Array.from(document.querySelectorAll('#accuracy .recall'))"
            ".map(td => td.textContent)",
            "external": "Array.from(document.querySelectorAll('[src],[href]'))"
            ".map(e => e.getAttribute('src') || e.getAttribute('href'))",
        },
        ready="window.__rendered !== undefined",
        screenshot=True,
        height=1000,
    )
    v = page.values
    assert page.console_errors == [], page.console_errors
    assert v["points"] > 10 and v["line"] == 1
    assert dict(map(tuple, v["rules"])) == dict(summary.rules)
    assert v["decisions"] == str(summary.candidates)
    assert v["precision"] and set(v["precision"]) == {"1.000"} and set(v["recall"]) == {"1.000"}
    assert v["external"] == ["data:,"]  # nothing fetched from anywhere
    out = os.environ.get("REPORT_SCREENSHOT")
    if out and page.screenshot:
        Path(out).write_bytes(page.screenshot)
