"""What the worker shows: its web pages (health, readiness, Prometheus metrics, stats,
one customer's state, the dashboard) and the observers that feed them (decision
latency, misfiring rules, the latest decisions).

Read only: nothing here changes state or writes to Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streams.core.clock import human_span, iso
from streams.core.engine import Engine
from streams.core.misfire import MisfireDetector
from streams.core.outcomes import Decided
from streams.core.policy import Policy
from streams.hints import command
from streams.processing.processor import Processor
from streams.worker.app import DurableTable, WorkerApp
from streams.worker.batches import Batches
from streams.worker.dashboard import PAGE as DASHBOARD
from streams.worker.dashboard import data as dashboard_data_of
from streams.worker.maintenance import Maintenance
from streams.worker.metrics import Snapshot, WorkerMetrics
from streams.worker.ownership import Ownership
from streams.worker.recent import RecentDecisions
from streams.worker.state_report import report
from streams.worker.table_store import TableStore

log = logging.getLogger("trigger_sanity.worker")

METRICS_TYPE = "text/plain; version=0.0.4"
"""The Prometheus text format (charset utf-8, aiohttp's default for text)."""


def _as_page(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """faust makes a page function the ``get`` of a View class and calls it as
    ``(view, request, **match)``: a bound method stored there would not be bound to the
    view, so each handler is wrapped in a plain function of its own name."""

    async def page(web: Any, request: Any, **match: Any) -> Any:
        return await handler(web, request, **match)

    page.__name__ = page.__qualname__ = handler.__name__.lstrip("_")
    return page


class Observers:
    """Decision latency, misfires and the latest decisions, fed by the processor."""

    def __init__(self, policy: Policy) -> None:
        self.misfire = MisfireDetector(policy.misfire)
        self.recent = RecentDecisions()
        self.metrics: WorkerMetrics | None = None

    def on_decided(self, d: Decided) -> None:
        if self.metrics is not None:
            self.metrics.observe_decision((d.decided_wall - d.candidate.record_time) / 1000)
        rule = d.decision.rule if d.decision.action == "suppress" else None
        self.misfire.observe(d.candidate.created_at, rule)
        self.recent.observe(d)

    def check_trips(self, engine: Engine) -> None:
        """One warning per campaign trip, with what to paste to act on it."""
        for t in engine.fresh_trips():
            log.warning(
                "campaign %s tripped (%s) at %s: %s; its candidates are held from %s on "
                "(%d held so far) until ops act or %s passes. Check it: %s; if intended: %s; "
                "if broken: %s",
                t.campaign, t.kind, iso(t.at_ms), t.summary(), t.message_id, t.held,
                human_span(engine.policy.blast.hold_ttl),
                command("campaign", "show", t.campaign),
                command("campaign", "release", t.campaign, "--reason", "intended"),
                command("campaign", "kill", t.campaign, "--reason", "broken"),
                extra={"campaign": t.campaign, "trip": t.kind, "fingerprint": t.fingerprint,
                       "share": round(t.share, 3), "held": t.held},
            )  # fmt: skip

    def check_misfires(self) -> None:
        started, recovered = self.misfire.check()
        for alarm in started:
            log.warning("%s", alarm.describe(), extra={"rule": alarm.rule, "misfire": True})
        for rule in recovered:
            log.info("rule %s back to its usual suppression rate", rule, extra={"rule": rule})


class Web:
    """The worker's pages, registered on faust's web server."""

    def __init__(
        self,
        app: WorkerApp,
        policy: Policy,
        processor: Processor,
        table: DurableTable,
        store: TableStore,
        ownership: Ownership,
        batches: Batches,
        maintenance: Maintenance,
        observers: Observers,
    ) -> None:
        self.app = app
        self.policy = policy
        self.processor = processor
        self.engine = processor.engine
        self.table = table
        self.store = store
        self.ownership = ownership
        self.batches = batches
        self.maintenance = maintenance
        self.observers = observers
        self.metrics = observers.metrics = WorkerMetrics(self.metrics_snapshot)

    def register(self) -> None:
        for path, handler in (
            ("/stats/", self._stats),
            ("/healthz", self._healthz),
            ("/readyz", self._readyz),
            ("/metrics", self._metrics),
            ("/customers/{customer_id}/", self._customer),
            ("/held/{message_id}/", self._held),
            ("/dashboard/", self._dashboard),
            ("/dashboard/data", self._dashboard_data),
        ):
            self.app.page(path)(_as_page(handler))

    # ------------------------------------------------------------ pages

    async def _stats(self, web: Any, request: Any) -> Any:
        return web.json(self.stats())

    async def _healthz(self, web: Any, request: Any) -> Any:
        # answering at all is the point: the event loop runs
        return web.json({"status": "alive", "phase": self.maintenance.phase})

    async def _readyz(self, web: Any, request: Any) -> Any:
        why = self.not_ready()
        if why is None:
            return web.json({"ready": True, "partitions": sorted(self.ownership.owned)})
        return web.json({"ready": False, "why": why}, status=503)

    async def _metrics(self, web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the type
        return web.text(self.metrics.render().decode(), content_type=METRICS_TYPE)

    async def _held(self, web: Any, request: Any, message_id: str) -> Any:
        """A message a campaign trip holds on this worker's partitions (empty: none)."""
        return web.json({"message_id": message_id,
                         "campaign_holds": self.engine.held_by_campaign(message_id)})  # fmt: skip

    async def _customer(self, web: Any, request: Any, customer_id: str) -> Any:
        partition = self.ownership.partition_of(customer_id)
        owned = self.ownership.owned
        if partition not in owned:
            return web.json(
                {"error": f"partition {partition} of customer {customer_id} is not owned "
                          f"by this worker (it owns {sorted(owned)})",
                 "partition": partition},
                status=409,
            )  # fmt: skip
        st = self.store.get(customer_id)
        if st is None:
            return web.json(
                {"error": f"no state for customer {customer_id}: never seen, or forgotten "
                          "after customer_ttl without activity", "partition": partition},
                status=404,
            )  # fmt: skip
        return web.json(report(customer_id, st, partition, self.engine.links_of(customer_id)))

    async def _dashboard(self, web: Any, request: Any) -> Any:
        return web.html(DASHBOARD)

    async def _dashboard_data(self, web: Any, request: Any) -> Any:
        counts = self.processor.counts
        recent = self.observers.recent
        return web.json(
            dashboard_data_of(
                recent.chart(),
                list(recent.latest),
                self.engine.held_count(),
                counts.get("dead_letter", 0),
                counts.get("late_evidence", 0),
                [a.describe() for a in self.observers.misfire.active.values()],
                self.policy.version,
                sorted(self.ownership.owned),
                iso(int(time.time() * 1000)),
                self.batches.delivery.transaction_stats(),
                self._holds(),
                self.engine.campaign_alerts(),
                self.engine.link_stats(),
            )
        )

    # ------------------------------------------------------------ what they show

    def not_ready(self) -> str | None:
        """Why this worker should not get traffic now (None: ready)."""
        if self.app.should_stop:
            return "stopping"
        if not self.ownership.ready:
            return "recovering state or handing over partitions (rebalance)"
        if self.app.rebalancing:
            return "rebalancing"
        if not self.ownership.owned:
            return "no input partitions assigned"
        return None

    def metrics_snapshot(self) -> Snapshot:
        counts = self.processor.counts
        rules = {
            k.split(":", 1)[1]: v for k, v in self.engine.counts.items() if k.startswith("rule:")
        }
        lag: dict[tuple[str, int], int] = {}
        consumer = self.app.consumer if self.ownership.ready else None
        if consumer is not None:
            roles = self.processor.role_of
            for tp in consumer.assignment():
                if tp.topic not in roles:
                    continue
                hw = consumer.highwater(tp)
                nxt = self.batches.fetches.next_offset.get(tp)
                if hw is not None and hw >= 0 and nxt is not None:
                    lag[(tp.topic, tp.partition)] = max(0, hw - nxt)
        misfire = self.observers.misfire
        return Snapshot(
            actions={a: counts.get(a, 0) for a in ("send", "rewrite", "suppress")},
            rules=rules,
            held=self.engine.held_count(),
            holds=self._holds(),
            dead_letters=counts.get("dead_letter", 0),
            late_evidence=counts.get("late_evidence", 0),
            late_unchecked=self.engine.counts.get("late_unchecked", 0),
            misrouted=dict(self.processor.misrouted),
            lag=lag,
            ready=self.not_ready() is None,
            misfiring={rule: a.recent_rate for rule, a in misfire.active.items()},
            transactions=self.batches.delivery.transaction_stats(),
            campaigns=self.engine.campaign_alerts(),
            links=self.engine.link_stats(),
        )

    def _holds(self) -> dict[str, int]:
        c = self.engine.counts
        return {
            "quiet_hours": c.get("quiet_held", 0),
            "cap": c.get("cap_deferred", 0),
            "campaign": c.get("campaign_held", 0),
        }

    def stats(self) -> dict[str, Any]:
        """What the stats page shows: counts an operator checks first."""
        history = self.engine.history
        return {
            "worker": dict(self.processor.counts),
            "misrouted": dict(self.processor.misrouted),
            "engine": dict(self.engine.counts),
            "held": self.engine.held_count(),
            # held past their own deadline since this worker started, by reason
            "holds": self._holds(),
            # tripped or killed campaigns ([blast]), with the count held here
            "campaigns": self.engine.campaign_alerts(),
            # identity links read here, unlinks, refused (dead-lettered), known in the book
            "links": self.engine.link_stats(),
            "customers": len(self.table.memory.data),
            "policy": self.policy.version,
            "policy_versions": history.summary(),
            "misfires": [a.describe() for a in self.observers.misfire.active.values()],
            "policy_rejected": [{"seq": seq, "error": why} for seq, why in history.rejected],
            "loop": dict(self.maintenance.loop_stats),
            "guarantee": self.batches.settings.guarantee,
            # committed, aborted, fenced, open now, recent commit p99 (None: at_least_once)
            "transactions": self.batches.delivery.transaction_stats(),
            # input partitions not trusted caught up yet: the broker came back from an
            # outage less than TRIGGER_SANITY_OUTAGE_GRACE ago (or is still away)
            "after_outage": self.batches.fetches.answering.in_grace(),
            "waiting_for": {
                p: self.engine.clock(p).waiting_for()
                for p in sorted(self.ownership.owned)
                if self.engine.held_count(p)
            },
        }
