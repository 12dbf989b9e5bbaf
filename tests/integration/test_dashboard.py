"""A misfire on a generated spike, and the dashboard in headless Chromium, on the real broker.

The dashboard is read the way a person reads it: Debian's chromium loads the
worker's page, runs its script and the test reads the numbers it shows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson

from tests.browser import load_page
from tests.helpers import cart, msg, purchase, session
from tests.integration.conftest import Env
from tests.integration.live import get, wait_logged


def test_a_spike_of_one_rule_is_a_misfire_and_the_dashboard_shows_what_was_decided(
    ts_env: Env, tmp_path: Path, free_port: int
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = "watchful-1"\n\n[misfire]\nwindow = "10m"\nbaseline = "1h"\n'
        "factor = 3.0\nmin_jump = 0.1\nmin_count = 5\n"
    )
    port = free_port
    ts_env.env.update({"TRIGGER_SANITY_WEB_ENABLED": "true", "TRIGGER_SANITY_WEB_PORT": str(port)})
    worker = ts_env.worker(policy)
    records: list[dict[str, Any]] = []
    for i in range(30):  # a quiet hour: promotions that are sent
        records.append(
            msg(f"m-b{i}", "promotion", f"09:{20 + i:02d}", cid=f"c-b{i}", payload={"n": i})
        )
    for i in range(10):  # then every cart mail comes after its purchase: suppressed
        cid = f"c-s{i}"
        records.append(purchase(f"10:{30 + i // 2:02d}", cid=cid))
        records.append(cart(f"m-s{i}", f"10:{31 + i // 2:02d}", f"10:{29 + i // 2:02d}", cid=cid))
        records.append(session("11:00", cid=cid))  # moves stream time past the carts' settle
    records.append({"topic": "purchases", "raw": b'{"event_id": "p-bad"', "key": b"c-s0"})
    ts_env.produce(records)
    got = ts_env.collect(
        ("send_queue", "suppressed", "dead_letter"),
        lambda g: len(g["send_queue"]) >= 30 and len(g["suppressed"]) >= 10 and g["dead_letter"],
        worker=worker,
    )
    assert len(got["suppressed"]) == 10

    wait_logged(worker, "misfiring", timeout=30)  # the check runs on the idle timer
    # the whole log: a busy one scrolls a tail. The check runs on a timer: it may catch
    # the spike after 5 (min_count) of its 10 suppressions or after all of them
    alarm = re.search(
        r"rule cart_already_purchased misfiring\? it suppressed 100% of the last (\d+)",
        worker.log.read_text(errors="replace"),
    )
    assert alarm is not None and 5 <= int(alarm.group(1)) <= 10
    res = get(port, "/metrics")
    assert res is not None
    assert b'trigger_sanity_misfire{rule="cart_already_purchased"} 1.0' in res[1]

    page = load_page(
        f"http://127.0.0.1:{port}/dashboard/",
        {
            "decisions": "document.getElementById('decisions').textContent",
            "suppressed": "document.getElementById('suppressed-total').textContent",
            "held": "document.getElementById('held').textContent",
            "dead": "document.getElementById('dead-letters').textContent",
            "late": "document.getElementById('late-evidence').textContent",
            "aborted": "document.getElementById('aborted-transactions').textContent",
            "misfires": "document.getElementById('misfires').textContent",
            "rule_totals": "Array.from(document.querySelectorAll('#rule-totals tbody tr'))"
            ".map(tr => [tr.dataset.rule, tr.querySelector('.count').textContent])",
            "bars": "Array.from(document.querySelectorAll('#chart rect'))"
            ".reduce((n, r) => n + Number(r.dataset.count), 0)",
            "latest": "Array.from(document.querySelectorAll('#latest tbody tr'))"
            ".map(tr => [tr.children[1].textContent, tr.children[4].textContent])",
            "evidence": "document.querySelector('#latest tbody tr').children[6].textContent",
        },
        ready="window.__loaded === true",
        screenshot=True,
    )
    v = page.values
    assert page.console_errors == [], page.console_errors
    assert v["decisions"] == "40" and v["suppressed"] == "10" and v["bars"] == 10
    assert v["held"] == "0" and v["dead"] == "1" and v["late"] == "0"
    assert v["aborted"] == "0 (0 fenced)"  # exactly-once, nothing aborted
    assert v["rule_totals"] == [["cart_already_purchased", "10"]]
    assert "rule cart_already_purchased misfiring?" in v["misfires"]
    shown = {mid for rule, mid in v["latest"]}
    assert shown == {f"m-s{i}" for i in range(10)}
    assert all(rule == "cart_already_purchased" for rule, _ in v["latest"])
    assert v["evidence"].startswith("purchases ")
    assert page.screenshot is not None and page.screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    out = os.environ.get("DASHBOARD_SCREENSHOT")
    if out:
        Path(out).write_bytes(page.screenshot)
    decided = {orjson.loads(r.value)["message"]["message_id"] for r in got["suppressed"]}
    assert decided == shown
