"""``/metrics`` in the Prometheus text format, one registry per worker.

The worker already counts what an operator watches (decisions by action and
rule, dead letters, late evidence, misrouted records); those counts are read
at scrape time by a collector rather than counted a second time. Only the
decision latency is observed as it happens, into a histogram. A registry of
its own per worker (not prometheus-client's global default) keeps two
workers in one process, as tests start them, from sharing or clashing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

PREFIX = "trigger_sanity"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(slots=True)
class Snapshot:
    """What the worker knows at scrape time."""

    actions: dict[str, int] = field(default_factory=dict)  # send / rewrite / suppress
    rules: dict[str, int] = field(default_factory=dict)  # rule id -> decisions it made
    held: int = 0
    holds: dict[str, int] = field(default_factory=dict)  # reason -> held past a deadline
    dead_letters: int = 0
    late_evidence: int = 0
    late_unchecked: int = 0
    misrouted: dict[str, int] = field(default_factory=dict)  # input topic -> records
    lag: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition)
    ready: bool = False
    misfiring: dict[str, float] = field(default_factory=dict)  # rule -> recent rate
    transactions: dict[str, Any] | None = None  # TransactionStats.as_dict(); None: at_least_once
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # Engine.campaign_alerts()
    links: dict[str, int] = field(default_factory=dict)  # Engine.link_stats()


class _Counts(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        decisions = CounterMetricFamily(
            f"{PREFIX}_decisions", "Candidates decided, by action", labels=["action"]
        )
        for action in ("send", "rewrite", "suppress"):
            decisions.add_metric([action], s.actions.get(action, 0))
        yield decisions
        rules = CounterMetricFamily(
            f"{PREFIX}_rule_decisions",
            "Decisions a rule made (suppressed, or rewrote), by rule id",
            labels=["rule"],
        )
        for rule, n in sorted(s.rules.items()):
            rules.add_metric([rule], n)
        yield rules
        yield CounterMetricFamily(
            f"{PREFIX}_dead_letters", "Records routed to the dead-letter topic", s.dead_letters
        )
        yield CounterMetricFamily(
            f"{PREFIX}_late_evidence",
            "Events that would have changed a decision already made",
            s.late_evidence,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_late_unchecked",
            "Records read so far behind their stream that a late-evidence check may have met "
            "already forgotten state",
            s.late_unchecked,
        )
        misrouted = CounterMetricFamily(
            f"{PREFIX}_misrouted_records",
            "Input records found on the wrong partition (forwarded), by topic",
            labels=["topic"],
        )
        for topic, n in sorted(s.misrouted.items()):
            misrouted.add_metric([topic], n)
        yield misrouted
        yield GaugeMetricFamily(
            f"{PREFIX}_held_candidates", "Candidates held until their deadline", s.held
        )
        holds = CounterMetricFamily(
            f"{PREFIX}_holds",
            "Candidates held past their own deadline since start, by reason (quiet_hours, cap, "
            "campaign)",
            labels=["reason"],
        )
        for reason, n in sorted(s.holds.items()):
            holds.add_metric([reason], n)
        yield holds
        tripped = GaugeMetricFamily(
            f"{PREFIX}_campaign_tripped",
            "1 while a campaign is tripped (its candidates held) or killed ([blast])",
            labels=["campaign", "state"],
        )
        held = GaugeMetricFamily(
            f"{PREFIX}_campaign_held",
            "Candidates of a tripped campaign held now, on this worker's partitions",
            labels=["campaign"],
        )
        for c in s.campaigns:
            tripped.add_metric([c["campaign"], c["state"]], 1)
            held.add_metric([c["campaign"]], c.get("held_here", 0))
        yield tripped
        yield held
        links = CounterMetricFamily(
            f"{PREFIX}_identity_links",
            "Identity links read by this worker's partitions since start, by kind (link, "
            "unlink, refused: dead-lettered as a cycle, over max_group or not linked)",
            labels=["kind"],
        )
        for kind, key in (("link", "links"), ("unlink", "unlinks"), ("refused", "refused")):
            links.add_metric([kind], s.links.get(key, 0))
        yield links
        lag = GaugeMetricFamily(
            f"{PREFIX}_consumer_lag",
            "Records not yet read, per input partition (highwater minus next offset)",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in sorted(s.lag.items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield GaugeMetricFamily(
            f"{PREFIX}_ready", "1 when recovered and partitions assigned", int(s.ready)
        )
        misfire = GaugeMetricFamily(
            f"{PREFIX}_misfire",
            "Share of recent decisions a rule suppressed, for rules whose rate jumped "
            "(see the policy's [misfire])",
            labels=["rule"],
        )
        for rule, rate in sorted(s.misfiring.items()):
            misfire.add_metric([rule], rate)
        yield misfire
        if s.transactions is not None:
            yield from _transactions(s.transactions)


def _transactions(t: dict[str, Any]) -> Iterator[Metric]:
    yield CounterMetricFamily(
        f"{PREFIX}_transactions_committed",
        "Kafka transactions committed (one per partition and commit cycle with writes)",
        t["committed"],
    )
    yield CounterMetricFamily(
        f"{PREFIX}_transactions_aborted",
        "Kafka transactions aborted or failed (each stops the worker, or ended a hand-over)",
        t["aborted"],
    )
    yield CounterMetricFamily(
        f"{PREFIX}_producers_fenced",
        "Transactional producers fenced by another worker claiming their partition",
        t["fenced"],
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_transactions_open", "Partitions with a transaction carrying writes", t["open"]
    )
    yield SummaryMetricFamily(
        f"{PREFIX}_transaction_commit_seconds",
        "Commit rounds (every owned partition's transaction ended together) and their time",
        count_value=t["rounds"],
        sum_value=t["seconds_total"],
    )


class WorkerMetrics:
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            f"{PREFIX}_decision_latency_seconds",
            "Decision time minus the candidate's input record time",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Counts(snapshot))

    def observe_decision(self, seconds: float) -> None:
        self.latency.observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)
