"""Ops commands on campaigns over event time: the control topic's records.

``trigger-sanity campaign release|kill|resume C`` writes a record with an
*effective event time*, like ``policy apply``: the gate applies it to the
candidates due at or after that time, before any candidate of that instant, so
every worker and an offline replay given the same records (``replay --offline
--campaign-history``) decide the same. The record keeps who, when and why.

The topic is compacted with one partition, keyed by a zero-padded sequence
number, so it keeps every command for good.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from streams.core.campaigns import Order
from streams.errors import PolicyError


class CampaignRecord(BaseModel):
    """One command, as written to the campaigns topic (key: ``seq``, zero-padded)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seq: int
    campaign: str = Field(min_length=1, max_length=256)
    command: Literal["release", "kill", "resume"]
    effective_at: str  # RFC 3339: candidates due at or after it see the command
    effective_ms: int
    by: str
    applied_at: str
    reason: str = Field(min_length=1, max_length=2000)

    def order(self) -> Order:
        return Order(self.campaign, self.command, self.effective_ms, self.seq, self.by,
                     self.reason)  # fmt: skip


def read_records(lines: Iterable[bytes]) -> Iterator[CampaignRecord]:
    """Records from JSON lines (``campaign history --json``, for offline replay)."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield CampaignRecord.model_validate(orjson.loads(line))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise PolicyError(f"campaign history line {n}: {exc}") from exc


def orders_from_file(path: str) -> list[Order]:
    """The commands an offline replay applies, in sequence order."""
    try:
        with open(path, "rb") as fh:
            records = sorted(read_records(fh), key=lambda r: r.seq)
    except OSError as exc:
        raise PolicyError(f"cannot read campaign history {path}: {exc.strerror}") from exc
    return [r.order() for r in records]
