"""What the worker knows of one customer, for people (``trigger-sanity state``).

The state's own encoding is compact and positional; this is the same facts
with names and readable times, in the order an operator asks about them:
what was bought and returned, sessions, consents, what was sent or
suppressed, what is held and until when.
"""

from __future__ import annotations

from typing import Any

from streams.core.clock import NEVER, iso
from streams.core.state import CustomerState


def _t(ms: int) -> str | None:
    return None if ms == NEVER else iso(ms)


def report(
    customer_id: str, st: CustomerState, partition: int, links: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``links``: the customer's identity group and the links that made it
    (``Linking.links_of``)."""
    return {
        "customer_id": customer_id,
        "partition": partition,
        "purchases": [
            {"event_id": p.event_id, "occurred_at": _t(p.t), "order_id": p.order_id,
             "items": [{"sku": s, "quantity": q} for s, q in p.items]}
            for p in st.purchases
        ],
        "returns": [
            {"event_id": r.event_id, "occurred_at": _t(r.t), "order_id": r.order_id,
             "items": [{"sku": s, "quantity": q} for s, q in r.items]}
            for r in st.returns
        ],
        "sessions_started": [{"event_id": s.event_id, "occurred_at": _t(s.t)} for s in st.sessions],
        "consents": [
            {"event_id": c.event_id, "occurred_at": _t(c.t), "channel": c.channel,
             "status": "withdrawn" if c.withdrawn else "granted"}
            for c in st.consents
        ],
        "orders": {
            o.order_id: {
                "purchased_at": None if o.purchase is None else _t(o.purchase[1]),
                "items": [{"sku": s, "quantity": q} for s, q in o.items],
                "returns": [{"event_id": e, "occurred_at": _t(t)} for e, t, _a, _i in o.returns],
            }
            for o in st.orders.values()
        },
        "sent": [
            {"message_id": s.message_id, "created_at": _t(s.created_at), "trigger": s.trigger,
             "channel": s.channel, "action": s.action, "rule": s.rule}
            for s in st.sent
        ],
        "suppressed_liftable": [
            {"message_id": s.message_id, "created_at": _t(s.created_at), "trigger": s.trigger,
             "rule": s.rule}
            for s in st.suppressed
        ],
        "held": [
            {"message_id": c.message_id, "trigger": c.trigger, "channel": c.channel,
             "created_at": _t(c.created_at), "deadline": _t(c.deadline),
             # why it waits past its own deadline (quiet hours, a cap), and until when
             "held_for": c.held_for or None, "zone": c.zone_used.replace("|", " from ") or None}
            for c in st.held
        ],
        "message_ids_remembered": len(st.decided),
        "activity": [{"from": _t(e.start), "to": _t(e.end)} for e in st.epochs],
        "unpublished_outputs": len(st.outbox),
        **(links or {}),
    }  # fmt: skip
