"""The worker's reader of the campaigns control topic: ops commands (``trigger-sanity
campaign release|kill|resume``) reach every partition's campaign gate replica.

Read like the policy topic (``PolicyFeed``): whole at start, before anything is
decided, then polled (every ``policy_poll_interval``). A command applies at its
effective event time. If any replica of this worker already passed that time when
the command is read, none of them applies it (applied by some, the replicas would
count the campaign differently from then on): that is logged as an error, naming
the partitions. ``campaign release|kill`` put the effective time 10 s after the
moment they are given, time enough for every worker to read it first. Workers
that read it at different moments can still differ when one of them is past it
and another is not; the error says so on the one that did not apply it.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError

from streams.core.campaign_history import CampaignRecord
from streams.core.engine import Engine
from streams.worker.policy_feed import PolicyFeed

log = logging.getLogger("trigger_sanity.campaigns")


class CampaignFeed(PolicyFeed):
    what = "campaigns topic"
    without = "no campaign commands"

    def __init__(
        self, topic: str, engine: Engine, client_kwargs: dict[str, Any], poll_interval: float
    ) -> None:
        super().__init__(topic, None, client_kwargs, poll_interval)
        self.engine = engine
        self.seen: set[int] = set()

    def take(self, value: bytes | None) -> None:
        if value is None:
            return
        self.read += 1
        try:
            rec = CampaignRecord.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            log.error("unreadable record on campaigns topic %s: %s", self.topic, exc)
            return
        if rec.seq in self.seen:
            return  # read again from the start of the topic
        self.seen.add(rec.seq)
        order = rec.order()
        gates = self.engine.gates()
        key = (order.effective_ms, 0, "", order.seq)
        late = sorted(p for p, g in gates.items() if g.position >= key)
        took = self.engine.command(order)
        if gates and not took:
            log.error(
                "campaign %s %s (seq %d, by %s) is effective at %s, which partition(s) %s "
                "had already passed: not applied on this worker's partitions (give it a "
                "later --at or a longer --in)",
                rec.command, rec.campaign, rec.seq, rec.by, rec.effective_at, late,
            )  # fmt: skip
        else:
            log.warning(
                "campaign %s %s (seq %d, by %s: %s) applies from %s",
                rec.command, rec.campaign, rec.seq, rec.by, rec.reason, rec.effective_at,
            )  # fmt: skip
