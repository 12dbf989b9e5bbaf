"""A candidate message on the hot path: the fields the rules read, in ms.

Built once from the validated ``OutboundMessage``; the message text as
received is kept (``raw``) because the send queue and the suppressed topic
must carry it untouched, unknown fields included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class Candidate:
    message_id: str
    customer_id: str
    created_at: int
    trigger: str
    channel: str
    category: str
    cart_updated_at: int | None
    order_id: str | None
    skus: tuple[str, ...] | None
    payload_hash: str
    record_time: int
    deadline: int
    received_wall: int
    seq: int  # the customer's read order of candidates (ties and "decided before me")
    raw: str
    arr: int  # frontier of its outbound stream when read: behind its deadline = a late trigger
    campaign: str = ""  # campaign_id, or derived from trigger and template (campaigns)
    basis: tuple[tuple[str, int], ...] | None = None  # (sku, signal time): stale signals
    zone: str | None = None  # context.timezone (quiet hours)
    held_for: str = ""  # "quiet_hours" once held by them (its deadline is then the release)
    zone_used: str = ""  # quiet hours: "Europe/Berlin (session)", what the decision names
    gate_at: int = 0  # campaigns: its entry's time once gated (a restore leaves it there)

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"

    def to_row(self) -> list[Any]:
        return [
            self.message_id,
            self.customer_id,
            self.created_at,
            self.trigger,
            self.channel,
            self.category,
            self.cart_updated_at,
            self.order_id,
            None if self.skus is None else list(self.skus),
            self.payload_hash,
            self.record_time,
            self.deadline,
            self.received_wall,
            self.seq,
            self.raw,
            self.arr,
            self.campaign,
            None if self.basis is None else [list(b) for b in self.basis],
            self.zone,
            self.held_for,
            self.zone_used,
            self.gate_at,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Candidate:
        skus = row[8]
        basis = row[17] if len(row) > 17 else None  # rows written before campaigns: none
        return cls(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            None if skus is None else tuple(skus),
            row[9],
            row[10],
            row[11],
            row[12],
            row[13],
            row[14],
            row[15],
            row[16] if len(row) > 16 else "",
            None if basis is None else tuple((sku, t) for sku, t in basis),
            row[18] if len(row) > 18 else None,
            row[19] if len(row) > 19 else "",
            row[20] if len(row) > 20 else "",
            row[21] if len(row) > 21 else 0,
        )


def payload_hash(payload: dict[str, Any]) -> str:
    """Stable digest of an opaque payload, for duplicate_content (key order ignored).

    orjson refuses integers beyond 64 bits; the standard library writes them exactly,
    so such a payload still hashes (and is still passed through unchanged)."""
    try:
        data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def campaign_of(trigger: str, payload: dict[str, Any], campaign_id: str | None) -> str:
    """The campaign a candidate belongs to: its ``campaign_id``, else its trigger plus
    ``":" + payload.template`` when the payload names a string template. Automation
    rarely tags campaigns; the template is what one campaign's messages share."""
    if campaign_id is not None:
        return campaign_id
    template = payload.get("template")
    return f"{trigger}:{template}" if isinstance(template, str) else trigger


def content_key(trigger: str, channel: str, skus: tuple[str, ...] | None, phash: str) -> str:
    """Same trigger, channel, SKU set and payload -> same key."""
    sku_part = ",".join(sorted(set(skus or ())))
    return f"{trigger}|{channel}|{sku_part}|{phash}"
