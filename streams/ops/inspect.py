"""Read the output topics for people: one readable line per decision.

Used by ``trigger-sanity inspect`` (ops reading the suppressed topic at
3 a.m.) and by the demo to print decisions as they happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from kafka import TopicPartition

from streams.core.candidate import campaign_of
from streams.core.clock import iso, to_ms
from streams.errors import UsageError
from streams.kafka.reader import assign_all, open_reader
from streams.settings import Settings


def describe(role: str, value: bytes | None) -> str:
    """A one-line summary of an output record; falls back to the raw text."""
    if value is None:
        return f"[{role}] (null)"
    try:
        rec: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f"[{role}] {value[:200]!r}"
    if role == "suppressed":
        m = rec.get("message", {})
        return (
            f"SUPPRESS {m.get('message_id')} {m.get('trigger')} -> {m.get('customer_id')}: "
            f"{rec.get('rule')}: {rec.get('reason')}"
        )
    if role == "send_queue":
        s = rec.get("sanity", {})
        extra = (
            f" (removed {', '.join(s.get('removed_skus', []))}: {s.get('rule')})"
            if s.get("action") == "rewrite"
            else ""
        )
        return (
            f"{s.get('action', '?').upper():8} {rec.get('message_id')} {rec.get('trigger')} -> "
            f"{rec.get('customer_id')}{extra}"
        )
    if role == "dead_letter":
        where = f"{rec.get('topic')}[{rec.get('partition')}]@{rec.get('offset')}"
        return f"DEAD     {where}: {rec.get('error')}"
    if role == "late_evidence":
        ev = rec.get("event", {})
        return (
            f"LATE     {rec.get('message_id')} ({rec.get('rule')}): {ev.get('topic')} "
            f"{ev.get('event_id')} arrived {rec.get('late_by_ms')} ms after the deadline"
        )
    return f"[{role}] {orjson.dumps(rec).decode()}"


def consume(
    settings: Settings,
    roles: tuple[str, ...],
    from_beginning: bool = True,
    timeout_ms: int = 1000,
    stop: Callable[[], bool] | None = None,
    follow: bool = False,
    since_ms: int | None = None,
    until_ms: int | None = None,
    customer: str | None = None,
    read: list[int] | None = None,
) -> Iterator[tuple[str, Any]]:
    """Yield (role, ConsumerRecord) from the output topics, without a consumer group
    (nothing committed, nobody else's offsets moved).

    ``since_ms``/``until_ms``: each partition is positioned by record time with the
    broker's time index (offsets-for-times), never scanned from the beginning; without
    ``follow`` it is read up to the first offset after ``until_ms`` (or its end).
    ``customer``: read only that customer's partition of each topic. ``read``,
    if given, gets the number of records fetched appended: what a seek saved."""
    topics = settings.topics
    names = {topics[r]: r for r in roles}
    # Everything that can fail on the broker's side (a missing topic, no broker) fails
    # here, when called, before the caller has printed anything (a table's header).
    consumer = open_reader(settings, timeout_ms)
    try:
        tps = assign_all(consumer, settings, names, customer)
        _position(consumer, tps, since_ms, from_beginning)
        stop_at = _stop_offsets(consumer, tps, None if follow else until_ms)
    except BaseException:
        consumer.close()
        raise
    return _records(consumer, names, tps, stop_at, stop, follow, until_ms, read)


def _records(
    consumer: Any,
    names: dict[str, str],
    tps: list[TopicPartition],
    stop_at: dict[TopicPartition, int],
    stop: Callable[[], bool] | None,
    follow: bool,
    until_ms: int | None,
    read: list[int] | None,
) -> Iterator[tuple[str, Any]]:
    fetched = 0
    try:
        while True:
            got = False
            for rec in consumer:
                got = True
                fetched += 1
                tp = TopicPartition(rec.topic, rec.partition)
                if tp in stop_at and rec.offset >= stop_at[tp]:
                    consumer.pause(tp)
                    continue
                if until_ms is not None and rec.timestamp > until_ms:
                    continue
                yield names[rec.topic], rec
                if stop is not None and stop():
                    return
                if tp in stop_at and rec.offset + 1 >= stop_at[tp]:
                    consumer.pause(tp)
            if stop is not None and stop():
                return
            if stop_at and len(consumer.paused()) == len(tps):
                return
            if not follow and not got:
                return
    finally:
        if read is not None:
            read.append(fetched)
        consumer.close()


def _position(
    consumer: Any, tps: list[TopicPartition], since_ms: int | None, from_beginning: bool
) -> None:
    """Each partition at its first record at or after ``since_ms`` (the broker's time
    index; its end when there is none), else at its beginning or end."""
    if since_ms is not None:
        at = consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        for tp in tps:
            found = at.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
    elif from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)


def _stop_offsets(
    consumer: Any, tps: list[TopicPartition], until_ms: int | None
) -> dict[TopicPartition, int]:
    """Per partition, the first offset after ``until_ms`` (or its end); partitions with
    nothing to read are paused at once."""
    if until_ms is None:
        return {}
    after = consumer.offsets_for_times({tp: until_ms + 1 for tp in tps})
    ends = consumer.end_offsets(tps)
    stop_at = {tp: (after[tp].offset if after.get(tp) else ends[tp]) for tp in tps}
    done = [tp for tp in tps if consumer.position(tp) >= stop_at[tp]]
    if done:
        consumer.pause(*done)
    return stop_at


# ---------------------------------------------------------------- rows for people

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_when(text: str, now_ms: int) -> int:
    """``15m``, ``2h``, ``3d`` (that long ago) or an RFC 3339 time -> epoch ms."""
    m = _DURATION.match(text)
    if m:
        return now_ms - int(m.group(1)) * _UNIT_MS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"{text!r} is neither a duration ago (15m, 2h, 3d) nor a time (2026-11-22T10:00:00Z)"
        ) from exc
    if dt.tzinfo is None:
        raise UsageError(f"{text!r}: give a UTC offset, e.g. {text}Z")
    return to_ms(dt)


@dataclass(frozen=True, slots=True)
class Row:
    """One output record as an operator reads it."""

    role: str
    what: str  # the rule, or what happened (send, rewrite: rule, dead-letter)
    customer: str
    trigger: str
    channel: str
    message_id: str
    reason: str
    timestamp: int  # the record's time (ms)
    campaign: str = "-"  # the message's campaign (campaign_id, else trigger:template)


@dataclass(frozen=True, slots=True)
class Filters:
    rule: str | None = None
    trigger: str | None = None
    channel: str | None = None
    customer: str | None = None
    campaign: str | None = None

    def __call__(self, row: Row | None) -> bool:
        if row is None:
            return self == Filters()  # unreadable records show only unfiltered
        return (
            (self.rule is None or row.what.split(": ")[-1] == self.rule)
            and (self.trigger is None or row.trigger == self.trigger)
            and (self.channel is None or row.channel == self.channel)
            and (self.customer is None or row.customer == self.customer)
            and (self.campaign is None or row.campaign == self.campaign)
        )


def _campaign(message: dict[str, Any]) -> str:
    payload = message.get("payload")
    cid = message.get("campaign_id")
    return campaign_of(
        str(message.get("trigger")),
        payload if isinstance(payload, dict) else {},
        cid if isinstance(cid, str) else None,
    )


def row_of(role: str, value: bytes | None, key: bytes | None, timestamp: int) -> Row | None:
    """The fields an operator filters and reads by; None when the value is not JSON."""
    try:
        rec: Any = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    if role == "suppressed":
        m = rec.get("message") or {}
        return Row(role, str(rec.get("rule")), str(m.get("customer_id")), str(m.get("trigger")),
                   str(m.get("channel")), str(m.get("message_id")), str(rec.get("reason")),
                   timestamp, _campaign(m))  # fmt: skip
    if role == "send_queue":
        s = rec.get("sanity") or {}
        action = str(s.get("action", "?"))
        if s.get("released"):
            what, reason = f"released: {s['released'].get('rule')}", "released by ops"
        elif action == "rewrite":
            what = f"rewrite: {s.get('rule')}"
            reason = "removed " + ", ".join(s.get("removed_skus") or [])
        else:
            what, reason = action, "sent"
        return Row(role, what, str(rec.get("customer_id")), str(rec.get("trigger")),
                   str(rec.get("channel")), str(rec.get("message_id")), reason,
                   timestamp, _campaign(rec))  # fmt: skip
    if role == "late_evidence":
        ev = rec.get("event") or {}
        reason = (f"{ev.get('topic')} {ev.get('event_id')} {rec.get('late_by_ms')} ms after "
                  f"the deadline: {rec.get('reason')}")  # fmt: skip
        return Row(role, str(rec.get("rule")), str(rec.get("customer_id")),
                   str(rec.get("trigger")), "-", str(rec.get("message_id")), reason,
                   timestamp)  # fmt: skip
    if role == "dead_letter":
        where = f"{rec.get('topic')}[{rec.get('partition')}]@{rec.get('offset')}"
        return Row(role, "dead-letter", key.decode("utf-8", "replace") if key else "-", "-",
                   "-", where, str(rec.get("error")), timestamp)  # fmt: skip
    return None


def age(now_ms: int, ts: int) -> str:
    secs = max(0, (now_ms - ts) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


COLUMNS = (("AGE", 5), ("RULE / ACTION", 30), ("CUSTOMER", 12), ("TRIGGER", 22), ("MESSAGE", 16))


def table_header(width: int) -> str:
    head = " ".join(f"{name:<{w}}" for name, w in COLUMNS) + " REASON"
    return head[:width]


def table_line(row: Row, now_ms: int, width: int) -> str:
    cells = (age(now_ms, row.timestamp), row.what, row.customer, row.trigger, row.message_id)
    line = " ".join(_fit(c, w) for c, (_n, w) in zip(cells, COLUMNS, strict=True))
    room = max(10, width - len(line) - 1)
    reason = row.reason if len(row.reason) <= room else row.reason[: room - 1] + "…"
    return f"{line} {reason}"


def _fit(text: str, w: int) -> str:
    return f"{text:<{w}}" if len(text) <= w else text[: w - 1] + "…"


def json_line(role: str, rec: Any) -> bytes:
    """One record for scripts: where it is, when, and its value as written."""
    try:
        value: Any = orjson.loads(rec.value) if rec.value is not None else None
    except orjson.JSONDecodeError:
        value = rec.value.decode("utf-8", "replace")
    return orjson.dumps(
        {
            "topic": rec.topic,
            "role": role,
            "partition": rec.partition,
            "offset": rec.offset,
            "timestamp": iso(rec.timestamp),
            "key": rec.key.decode("utf-8", "replace") if rec.key is not None else None,
            "value": value,
        }
    )
