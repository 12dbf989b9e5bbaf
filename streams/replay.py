"""Replay a history file: offline through the core, or into the Kafka topics.

Offline, each input topic's records, in file order, are that topic's stream;
the streams are merged by event time (one reader per topic over the same
file, so memory is bounded by customer state, not by the file) and fed to
the same ``Engine`` the worker runs. The next unread record of every topic
is known, so a candidate is decided as soon as nothing at or before its
deadline can still come; whatever is held at the end of input is decided
then. Bad lines and unreadable values are counted and reported by line
number; processing continues.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from streams import codec
from streams.engine import Decided, Engine, LateFinding, MemoryStore, Output
from streams.history import (
    INPUT_TOPICS,
    BadLine,
    HistoryRecord,
    iter_lines,
    parse_line,
    read_history,
)
from streams.outputs import offline_line
from streams.policy import Policy

_KIND_ORDER = {k: i for i, k in enumerate(INPUT_TOPICS)}  # outbound last on equal times


@dataclass
class ReplaySummary:
    records: int = 0
    candidates: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    late: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # line, topic, error
    seconds: float = 0.0

    def render(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0.0
        lines = [
            f"replayed {self.records} records ({self.candidates} candidates) in "
            f"{self.seconds:.2f}s ({rate:,.0f} records/s)",
            "actions: "
            + ", ".join(f"{a}={self.actions.get(a, 0)}" for a in ("send", "rewrite", "suppress")),
            "per rule:",
        ]
        if self.rules:
            width = max(len(r) for r in self.rules)
            for rule, n in sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {rule:<{width}}  {n}")
        else:
            lines.append("  (no rule fired)")
        if self.late:
            lines.append(f"late evidence: {self.late}")
        bad = len(self.bad_lines) + len(self.unreadable)
        if bad:
            lines.append(f"unreadable: {bad} (kept going)")
            for ln, err in self.bad_lines[:20]:
                lines.append(f"  line {ln}: {err}")
            for ln, topic, err in self.unreadable[:20]:
                lines.append(f"  line {ln} ({topic}): {err}")
            if bad > 40:
                lines.append(f"  ... and {bad - 40} more")
        return "\n".join(lines)


_NEEDLES = {t: b'"' + t.encode() + b'"' for t in INPUT_TOPICS}


def _topic_stream(
    path: str | Path, topic: str, bad: dict[int, str], report_orphans: bool
) -> Iterator[HistoryRecord]:
    """Records of one topic in file order.

    A line of topic X must contain ``"X"`` (unless it spells it with ``\\u``
    escapes), so each reader parses only its candidate lines: about one parse
    per line in all, not one per reader. Bad lines go to ``bad`` by line
    number (a line may be seen by two readers); the reader with
    ``report_orphans`` also parses lines that name no topic at all.
    """
    needle = _NEEDLES[topic]
    others = [n for t, n in _NEEDLES.items() if t != topic]
    for i, line in iter_lines(path):
        if needle not in line and b"\\u" not in line:
            if not report_orphans or any(n in line for n in others):
                continue
        rec = parse_line(i, line)
        if rec is None:
            continue
        if isinstance(rec, BadLine):
            bad.setdefault(rec.line_no, rec.error)
            continue
        if rec.topic == topic:
            yield rec


def _merge(
    path: str | Path, bad: dict[int, str]
) -> Iterator[tuple[HistoryRecord, dict[str, int | None]]]:
    """Merge per-topic streams by event time; yield each record with every topic's next time.

    The second item maps topic -> event time of its next unread record (None
    once the topic is exhausted), which is exactly the offline frontier.
    """
    streams = {t: _topic_stream(path, t, bad, t == "outbound") for t in INPUT_TOPICS}
    heap: list[tuple[int, int, int, HistoryRecord]] = []
    last: dict[str, int] = dict.fromkeys(INPUT_TOPICS, -(2**62))
    nxt: dict[str, int | None] = dict.fromkeys(INPUT_TOPICS)

    def push(topic: str) -> None:
        rec = next(streams[topic], None)
        if rec is None:
            nxt[topic] = None
            return
        # A record without a usable time (it will be dead-lettered) keeps its topic's place.
        t = rec.event_ms if rec.event_ms is not None else last[topic]
        last[topic] = max(last[topic], t)
        nxt[topic] = t
        heapq.heappush(heap, (t, _KIND_ORDER[topic], rec.line_no, rec))

    for t in INPUT_TOPICS:
        push(t)
    while heap:
        _t, _k, _ln, rec = heapq.heappop(heap)
        push(rec.topic)
        yield rec, nxt


def replay_offline(
    path: str | Path,
    policy: Policy,
    out: IO[bytes] | None,
    progress: Callable[[int], None] | None = None,
    late_out: IO[bytes] | None = None,
) -> ReplaySummary:
    summary = ReplaySummary()
    engine = Engine(policy, MemoryStore())
    clock = engine.clock(0)
    started = time.perf_counter()
    sweep_every = 50_000

    def emit(outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, Decided):
                summary.actions[o.decision.action] += 1
                if o.decision.rule:
                    summary.rules[o.decision.rule] += 1
                if out is not None:
                    out.write(orjson.dumps(offline_line(o)) + b"\n")
            elif isinstance(o, LateFinding):
                summary.late += 1
                if late_out is not None:
                    late_out.write(
                        orjson.dumps(
                            {
                                "message_id": o.sent.message_id,
                                "rule": o.rule,
                                "event_id": o.event[1],
                                "late_by_ms": o.late_by_ms,
                            }
                        )
                        + b"\n"
                    )

    bad: dict[int, str] = {}
    for rec, nxt in _merge(path, bad):
        summary.records += 1
        record_ms = rec.record_ms if rec.record_ms is not None else (rec.event_ms or 0)
        parsed = codec.decode(rec.topic, rec.value, record_ms, record_ms, policy)
        if isinstance(parsed, codec.Unreadable):
            summary.unreadable.append((rec.line_no, rec.topic, parsed.error))
        else:
            if parsed.kind == "outbound":
                summary.candidates += 1
            emit(
                engine.ingest(
                    0, parsed.kind, parsed.customer_id, parsed.event_ms, parsed.fact, record_ms
                )
            )
        for topic, t in nxt.items():
            if t is None:
                clock.set_idle(topic, True)
            else:
                clock.set_frontier(topic, t)
        emit(engine.release(0, record_ms))
        if summary.records % sweep_every == 0:
            engine.sweep(lambda _cid: 0)
            if progress is not None:
                progress(summary.records)
    emit(engine.flush(0))
    summary.bad_lines = sorted(bad.items())
    summary.seconds = time.perf_counter() - started
    return summary


def produce_history(
    path: str | Path,
    producer: Any,
    topic_names: dict[str, str],
    speedup: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, list[tuple[int, str]]]:
    """Produce a history file into the input topics in file order (kafka-python producer).

    ``speedup``: None = as fast as possible; otherwise event-time gaps are
    replayed ``speedup`` times faster than they happened.
    """
    sent = 0
    bad: list[tuple[int, str]] = []
    first_event: int | None = None
    wall_start = time.monotonic()
    for rec in read_history(path):
        if isinstance(rec, BadLine):
            bad.append((rec.line_no, rec.error))
            continue
        if speedup and rec.event_ms is not None:
            if first_event is None:
                first_event = rec.event_ms
            due = wall_start + (rec.event_ms - first_event) / 1000 / speedup
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the replay, not waiting out a race
        ts = rec.record_ms if rec.record_ms is not None else rec.event_ms
        producer.send(topic_names[rec.topic], key=rec.key, value=rec.value, timestamp_ms=ts)
        sent += 1
        if progress is not None and sent % 10_000 == 0:
            progress(sent)
    producer.flush()
    return sent, bad


def print_progress(prefix: str) -> Callable[[int], None]:
    def report(n: int) -> None:
        print(f"{prefix}: {n:,} records", file=sys.stderr, flush=True)

    return report
