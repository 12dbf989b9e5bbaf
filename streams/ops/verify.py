"""Conservation: every candidate ends in exactly one place, counted by ``message_id``.

``trigger-sanity verify`` reads ``outbound`` (what came in) and ``send-queue``,
``suppressed`` and ``dead-letter`` (where it went) up to their current end
offsets and reports what is missing, what was written twice (byte-identical
copies, which downstream deduplication on ``message_id`` absorbs, or
different ones, which it cannot), and, given the history file the topics
were filled from, which decisions differ from the offline replay. The
counting is pure (``conserve``); only ``read_topics`` touches Kafka, and
``verify_topics`` puts the two together with the replay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from streams.settings import Settings

DecisionKey = tuple[str, str, str | None, tuple[str, ...]]  # id, action, rule, removed SKUs


@dataclass
class Conservation:
    records_in: int = 0  # outbound records
    dead_lettered: int = 0  # outbound records that could not be read
    candidates: int = 0  # readable candidates, each owed exactly one decision
    message_ids: int = 0  # distinct message ids among them
    decisions: int = 0  # send-queue + suppressed records
    missing: int = 0
    duplicated_identical: int = 0
    duplicated_different: int = 0
    different: int = 0  # decided otherwise than the offline replay (with a history)
    unexpected: int = 0  # decisions for message ids that never came in
    ids_decided_again: int = 0  # ids that came in more than once, decided each time
    ids_sent_again: int = 0  # ids on the send queue more than once (not byte-identical)
    ids_sent_again_unexplained: int = 0  # ... more often than the offline replay sends them
    input_repeated: int = 0  # ids that came in more often than the history has them
    unreadable_outputs: int = 0  # output records that are not what the worker writes
    offline_checked: bool = False
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.different
            or self.duplicated_different
            or self.unexpected
            or (self.ids_sent_again_unexplained if self.offline_checked else self.ids_sent_again)
        )

    def render(self) -> str:
        rows = [(k, v) for k, v in asdict(self).items() if k not in ("examples", "offline_checked")]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        for what, ids in self.examples.items():
            lines.append(f"{what}, e.g.: {', '.join(ids[:10])}")
        if self.unreadable_outputs:
            lines.append(
                f"warning: {self.unreadable_outputs} output record(s) could not be read "
                "(not JSON, or not a decision) and were left out of the counts"
            )
        lines.append(
            "OK: every candidate decided once, no message id sent twice"
            + (" (but as often as the offline replay)" if self.ids_sent_again else "")
            if self.ok
            else "NOT OK"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def decision_key(role: str, value: bytes) -> DecisionKey:
    """The decision a send-queue or suppressed record holds; ``ValueError`` when the record
    is not one (not JSON, or missing what the worker writes)."""
    try:
        v = orjson.loads(value)
        if role == "send_queue":
            s = v["sanity"]
            return (v["message_id"], s["action"], s.get("rule"), tuple(s.get("removed_skus", ())))
        return (v["message"]["message_id"], "suppress", v["rule"], ())
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a {role} record: {exc}") from exc


def _message_id(value: bytes | None) -> str | None:
    try:
        v = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    mid = v.get("message_id") if isinstance(v, dict) else None
    return mid if isinstance(mid, str) else None


def _unreadable_candidates(
    dead_letters: Iterable[bytes], outbound_topic: str, r: Conservation
) -> Counter[str]:
    """Message ids of candidates dead-lettered on input (not decision failures, which
    carry no partition), each as often as it was."""
    unreadable: Counter[str] = Counter()
    for raw in dead_letters:
        try:
            dl = orjson.loads(raw)
        except orjson.JSONDecodeError:
            r.unreadable_outputs += 1
            continue
        if not isinstance(dl, dict):
            r.unreadable_outputs += 1
            continue
        if dl.get("topic") != outbound_topic or dl.get("value_encoding") != "utf-8":
            continue
        mid = _message_id(str(dl.get("value", "")).encode())
        if mid is not None and dl.get("partition") is not None:
            unreadable[mid] += 1
    return unreadable


Copies = dict[str, list[tuple[DecisionKey, bytes, str]]]


def _decided(send_queue: Iterable[bytes], suppressed: Iterable[bytes], r: Conservation) -> Copies:
    got: Copies = {}
    for role, values in (("send_queue", send_queue), ("suppressed", suppressed)):
        for value in values:
            try:
                key = decision_key(role, value)
            except ValueError:
                r.unreadable_outputs += 1
                continue
            got.setdefault(key[0], []).append((key, value, role))
            r.decisions += 1
    return got


def conserve(
    outbound: Iterable[bytes | None],
    send_queue: Iterable[bytes],
    suppressed: Iterable[bytes],
    dead_letters: Iterable[bytes],
    outbound_topic: str,
    offline: Iterable[DecisionKey] | None = None,
) -> Conservation:
    """Per message id: the copies that came in (and could be read) are owed one decision
    each; what is missing, written twice, decided otherwise than the offline replay, and
    which ids were decided or sent more than once."""
    r = Conservation()
    came_in: Counter[str] = Counter()
    for value in outbound:
        r.records_in += 1
        mid = _message_id(value)
        if mid is not None:
            came_in[mid] += 1
    unreadable = _unreadable_candidates(dead_letters, outbound_topic, r)
    r.dead_lettered = sum(unreadable.values())
    owed = came_in - unreadable
    r.candidates = sum(owed.values())
    r.message_ids = len(owed)
    got = _decided(send_queue, suppressed, r)
    examples: dict[str, list[str]] = {}
    for mid, copies in got.items():
        if mid not in came_in:
            r.unexpected += len(copies)
            examples.setdefault("unexpected", []).append(mid)
            continue
        extra = len(copies) - owed[mid]
        if extra > 0:
            values = Counter(v for _k, v, _role in copies)
            identical = sum(n - 1 for n in values.values())
            r.duplicated_identical += min(extra, identical)
            r.duplicated_different += max(0, extra - identical)
            examples.setdefault("duplicated", []).append(mid)
    for mid, n in owed.items():
        short = n - len(got.get(mid, []))
        if short > 0:
            r.missing += short
            examples.setdefault("missing", []).append(mid)
    _ids_again(r, owed, got, examples)
    if offline is not None:
        _against(r, list(offline), got, came_in, examples)
    r.examples = examples
    return r


def _ids_again(
    r: Conservation, owed: Counter[str], got: Copies, examples: dict[str, list[str]]
) -> None:
    for mid, n in owed.items():
        if n > 1:
            r.ids_decided_again += 1
        sends = {v for _k, v, role in got.get(mid, ()) if role == "send_queue"}
        if len(sends) > 1:  # byte-identical copies are one send written twice
            r.ids_sent_again += 1
            examples.setdefault("sent more than once", []).append(mid)


def _against(
    r: Conservation,
    offline: list[DecisionKey],
    got: Copies,
    came_in: Counter[str],
    examples: dict[str, list[str]],
) -> None:
    """Compared with the offline replay of the history the topics were filled from. An
    id that came in more often than the history has it was written twice by its producer
    (a retry through a broker outage, without idempotence surviving it): its extra copy
    is a real duplicate to the worker, not a decision to compare."""
    r.offline_checked = True
    want: dict[str, Counter[DecisionKey]] = {}
    for k in offline:
        want.setdefault(k[0], Counter())[k] += 1
    for mid, copies in got.items():
        if mid in want and came_in[mid] > sum(want[mid].values()):
            r.input_repeated += 1
            examples.setdefault("came in more often than in the history", []).append(mid)
            continue
        keys = {k for k, _v, _role in copies}
        if mid in want and not keys <= set(want[mid]):
            r.different += 1
            examples.setdefault("different", []).append(mid)
        sends = {v for _k, v, role in copies if role == "send_queue"}
        offline_sends = sum(n for k, n in want.get(mid, Counter()).items() if k[1] != "suppress")
        if len(sends) > max(1, offline_sends):
            r.ids_sent_again_unexplained += 1
            examples.setdefault("sent more often than offline", []).append(mid)


def read_topics(settings: Settings, roles: tuple[str, ...]) -> dict[str, list[bytes | None]]:
    """Every record of the given topics up to their end offsets now (no consumer group).
    A missing topic is an error naming every one missing, never an empty count."""
    from streams.kafka.reader import assign_all, open_reader

    consumer = open_reader(settings, timeout_ms=2000)
    try:
        names = {settings.topics[r]: r for r in roles}
        tps = assign_all(consumer, settings, names)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: dict[str, list[bytes | None]] = {r: [] for r in roles}
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = consumer.poll(timeout_ms=2000, max_records=10_000)
            if not batch:
                todo = {tp for tp in todo if consumer.position(tp) < ends[tp]}
                continue
            for tp, recs in batch.items():
                for rec in recs:
                    if rec.offset < ends[tp]:
                        out[names[tp.topic]].append(rec.value)
                if consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return out
    finally:
        consumer.close()


def offline_decisions(
    history: str | Path, policy_file: str | Path | None, partitions: int
) -> list[DecisionKey]:
    """The decisions an offline replay of ``history`` makes, as ``conserve`` compares them."""
    import io

    from streams.core.policy import load_policy
    from streams.offline.replay import replay_offline

    buf = io.BytesIO()
    replay_offline(history, load_policy(policy_file), buf, partitions=partitions)
    return [
        (d["message_id"], d["action"], d["rule"], tuple(d["removed_skus"]))
        for d in map(orjson.loads, buf.getvalue().splitlines())
    ]


def verify_topics(
    settings: Settings,
    history: str | Path | None = None,
    policy_file: str | Path | None = None,
    partitions: int | None = None,
) -> Conservation:
    """Conservation over the topics as they are now; with ``history`` (the file they were
    filled from) also against its offline replay under ``policy_file`` (default: the
    workers' policy) over ``partitions`` (default: the configured count)."""
    got = read_topics(settings, ("outbound", "send_queue", "suppressed", "dead_letter"))
    offline = None
    if history:
        offline = offline_decisions(
            history, policy_file or settings.policy_file, partitions or settings.partitions
        )
    return conserve(
        got["outbound"],
        [v for v in got["send_queue"] if v is not None],
        [v for v in got["suppressed"] if v is not None],
        [v for v in got["dead_letter"] if v is not None],
        settings.topics["outbound"],
        offline,
    )
