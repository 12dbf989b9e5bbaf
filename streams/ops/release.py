"""Release a suppressed message by hand: forward it to the send queue, once, on record.

Ops use it when a rule was wrong for one customer. It talks to Kafka only, so
it works with every worker down. Guarantees, and how:

- **Once.** The send-queue record and the ``releases`` audit record are written
  in one Kafka transaction whose transactional id is derived from the message
  id. A second release of the same message, even one started at the same
  moment by someone else, first fences the other (Kafka aborts its open
  transaction), then reads the ``releases`` topic with ``read_committed``: a
  committed release is found and refused, saying when and by whom; an aborted
  one left nothing a ``read_committed`` reader sees.
- **On record.** Who, when, why and which rule it overrode are on ``releases``
  (keyed by the customer id, like every output) and in the released
  send-queue record's ``sanity.released``.
- A crash between the two writes cannot leave one without the other: they
  commit together or not at all. Downstream consumers of the send queue must
  read with ``isolation.level=read_committed`` to never see an aborted release
  (the worker's own writes are not transactional and are visible either way).
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import InvalidProducerEpochError, InvalidTxnStateError, ProducerFencedError

from streams.contract import rawjson, render
from streams.core.clock import iso
from streams.kafka.reader import assign_all, open_reader
from streams.settings import Settings

DEFAULT_LOOKBACK_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Found:
    role: str
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    record: dict[str, Any]


class Refused(Exception):
    """The release cannot go ahead (already released, nothing suppressed): exit 1."""


def message_id_of(role: str, rec: dict[str, Any]) -> str | None:
    if role == "suppressed":
        return (rec.get("message") or {}).get("message_id")
    if role in ("send_queue", "late_evidence", "releases"):
        return rec.get("message_id")
    if role == "dead_letter" and rec.get("topic", "").endswith("outbound"):
        try:
            value = orjson.loads(rec.get("value") or "null")
        except orjson.JSONDecodeError:
            return None
        return value.get("message_id") if isinstance(value, dict) else None
    return None


def search(
    settings: Settings,
    roles: tuple[str, ...],
    message_id: str,
    customer: str | None = None,
    since_ms: int | None = None,
) -> Iterator[Found]:
    """Every record of these output topics that names ``message_id``: one partition when
    the customer is known, else all; from ``since_ms`` (the broker's time index) to the
    end offsets as of the start."""
    consumer = open_reader(settings)
    try:
        names = {settings.topics[r]: r for r in roles}
        tps = assign_all(consumer, settings, names, customer)
        ends = consumer.end_offsets(tps)
        if since_ms is not None:
            at = consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                found = at.get(tp)
                consumer.seek(tp, found.offset if found is not None else ends[tp])
        else:
            consumer.seek_to_beginning(*tps)
        todo = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        needle = message_id.encode()
        while todo:
            batches = consumer.poll(timeout_ms=1000)
            for tp, records in batches.items():
                for rec in records:
                    if rec.offset >= ends[tp] or rec.value is None or needle not in rec.value:
                        continue
                    try:
                        value = orjson.loads(rec.value)
                    except orjson.JSONDecodeError:
                        continue
                    role = names[rec.topic]
                    if isinstance(value, dict) and message_id_of(role, value) == message_id:
                        yield Found(role, rec.topic, rec.partition, rec.offset, rec.timestamp,
                                    rec.key, rec.value, value)  # fmt: skip
            for tp in list(todo):
                if consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        consumer.close()


def released_value(suppressed: Found, by: str, reason: str, now_ms: int) -> bytes:
    """The send-queue record of a hand release of ``suppressed``."""
    at = rawjson.span(suppressed.value, "message")
    if at is None:  # found by its message's id, so it has one
        raise Refused(f"suppressed record {suppressed.topic}[{suppressed.partition}]@"
                      f"{suppressed.offset} has no message")  # fmt: skip
    rec = suppressed.record
    return render.released_value(suppressed.value[at[0] : at[1]], rec.get("policy"),
                                 rec.get("rule"), by, reason, now_ms)  # fmt: skip


FENCED = (ProducerFencedError, InvalidProducerEpochError, InvalidTxnStateError)
"""What a release gets when another release of the same message fenced it."""

RACE_WAIT_S = 10.0
"""How long the loser of two simultaneous releases waits for the winner's transaction to
commit, to say who released the message."""


def _refuse_if_released(settings: Settings, message_id: str, wait_s: float = 0.0) -> None:
    """Refuse (exit 1) when a committed release of the message is on ``releases``, saying
    by whom and when; with ``wait_s``, look again until then (a transaction still open
    is not visible to a committed read yet)."""
    deadline = time.monotonic() + wait_s
    while True:
        for prior in search(settings, ("releases",), message_id):
            r = prior.record
            raise Refused(
                f"{message_id} was already released at {r.get('released_at')} by "
                f"{r.get('released_by')} ({r.get('note') or 'no reason given'}); "
                "nothing was written"
            )
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)  # polling the releases topic for the winner's commit, bounded


def release(
    settings: Settings,
    message_id: str,
    reason: str,
    by: str | None = None,
    customer: str | None = None,
    since_ms: int | None = None,
) -> dict[str, Any]:
    """Forward the suppressed message once; returns the ``releases`` record written."""
    by = by or getpass.getuser()
    now = int(time.time() * 1000)
    producer = KafkaProducer(
        transactional_id=f"{settings.app_id}-release-{message_id}",
        **settings.kafka_producer_kwargs(),
    )
    try:
        producer.init_transactions()  # fences another release of this message in flight
        _refuse_if_released(settings, message_id)
        since = since_ms if since_ms is not None else now - DEFAULT_LOOKBACK_MS
        found = list(search(settings, ("suppressed",), message_id, customer, since))
        if not found:
            where = f"customer {customer}'s partition" if customer else "every partition"
            raise Refused(
                f"no suppressed record of {message_id} in {settings.topics['suppressed']} "
                f"({where}, since {iso(since)}): check the id, or widen with --since"
            )
        sup = found[-1]
        cid = str((sup.record.get("message") or {}).get("customer_id"))
        audit = {
            "message_id": message_id,
            "customer_id": cid,
            "rule": sup.record.get("rule"),
            "released_by": by,
            "released_at": iso(now),
            "note": reason,
        }
        try:
            producer.begin_transaction()
            producer.send(settings.topics["send_queue"], key=cid.encode(),
                          value=released_value(sup, by, reason, now))  # fmt: skip
            producer.send(settings.topics["releases"], key=cid.encode(),
                          value=orjson.dumps(audit))  # fmt: skip
            producer.commit_transaction()
        except FENCED as exc:
            # Another release of the same message started meanwhile and fenced this one:
            # nothing of this one is visible. Say who released it (once it committed).
            _refuse_if_released(settings, message_id, wait_s=RACE_WAIT_S)
            raise Refused(
                f"{message_id}: another release of it started meanwhile and took over "
                f"({type(exc).__name__}); nothing of this one was written"
            ) from exc
        return audit
    finally:
        producer.close()
