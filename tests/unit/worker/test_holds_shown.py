"""Held counts by reason where ops look: /metrics, the dashboard's data, ``stats``."""

from __future__ import annotations

from streams.ops.stats import DecisionStats
from streams.worker.dashboard import data
from streams.worker.metrics import Snapshot, WorkerMetrics


def test_metrics_count_holds_by_reason() -> None:
    text = WorkerMetrics(lambda: Snapshot(holds={"quiet_hours": 12, "cap": 3})).render().decode()
    assert 'trigger_sanity_holds_total{reason="quiet_hours"} 12.0' in text
    assert 'trigger_sanity_holds_total{reason="cap"} 3.0' in text


def test_the_dashboard_data_carries_them() -> None:
    d = data({}, [], 4, 0, 0, [], "p", [0], "now", None, {"quiet_hours": 2, "cap": 1})
    assert d["holds"] == {"quiet_hours": 2, "cap": 1} and d["held"] == 4


def test_stats_prints_them_when_there_are_any() -> None:
    s = DecisionStats(since_ms=0, until_ms=1, interval_ms=1)
    assert "held past their deadline" not in s.render()
    s.holds = {"quiet_hours": 1200, "cap": 7}
    assert "held past their deadline (this worker since its start): cap 7  quiet hours 1,200" in (
        s.render()
    )
