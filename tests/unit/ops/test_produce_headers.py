"""What ``trigger-sanity replay`` tells the workers on each record it produces: its
partition, by the chosen partitioner, and which streams of that partition still have
records to come in the file."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from streams.contract.history import write_history
from streams.contract.partitioning import partition_for
from streams.ops.produce import produce_history
from tests.helpers import msg, purchase, session


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, topic: str, **kw: Any) -> None:
        self.sent.append({"topic": topic, **kw})

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("partitioner", "place"),
    [
        ("murmur2", lambda key, n: partition_for(key.decode(), n)),
        ("crc32", lambda key, n: zlib.crc32(key) % n),
    ],
)
def test_each_record_names_the_streams_of_its_partition_still_open(
    tmp_path: Path, partitioner: str, place: Any
) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [
        session("09:00"), msg("m-1", "promotion", "10:00"), purchase("10:05"),
        msg("m-2", "promotion", "10:10"), session("11:00"),
    ])  # fmt: skip
    rec = Recorder()
    names = {r: f"x.{r}" for r in ("purchases", "returns", "sessions", "consents", "outbound")}
    produce_history(path, rec, names, partitions=4, partitioner=partitioner)
    p = place(b"c-42", 4)
    assert {s["partition"] for s in rec.sent} == {p}
    opened = [dict(s["headers"])["ts-open"].split(b";") for s in rec.sent]
    assert len({rid for rid, _roles in opened}) == 1  # one replay, one id
    assert [roles for _rid, roles in opened] == [
        b"purchases,sessions,outbound",  # after the first session: every stream still open
        b"purchases,sessions,outbound",
        b"sessions,outbound",  # the last purchase
        b"sessions",  # the last candidate
        b"",  # the last record of all
    ]


def test_without_a_partition_count_nothing_is_announced(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, [session("09:00"), msg("m-1", "promotion", "10:00")])
    rec = Recorder()
    produce_history(path, rec, {"sessions": "s", "outbound": "o"})
    assert all(s["partition"] is None and s["headers"] is None for s in rec.sent)


def _apart_by_murmur2_together_by_crc32(n: int) -> tuple[str, str]:
    ids = [f"c-{i}" for i in range(100)]
    for a in ids:
        for b in ids:
            if (zlib.crc32(a.encode()) % n == zlib.crc32(b.encode()) % n
                    and partition_for(a, n) != partition_for(b, n)):  # fmt: skip
                return a, b
    raise AssertionError("no such pair")


@pytest.mark.parametrize(
    ("scenario", "order", "partitioner", "expect"),
    [
        ("in_time_order_any_placement_agrees", "time", "crc32", 0),
        ("grouped_by_customer_crc32_puts_one_behind_the_other", "grouped", "crc32", 1),
        ("grouped_by_customer_the_contracts_placement_is_the_offline_one", "grouped",
         "murmur2", 0),
    ],
)  # fmt: skip
def test_replay_knows_which_records_a_placement_judges_late_otherwise(
    tmp_path: Path, scenario: str, order: str, partitioner: str, expect: int
) -> None:
    from streams.ops.produce import judged_otherwise

    a, b = _apart_by_murmur2_together_by_crc32(2)
    recs = [purchase("09:00", cid=b), purchase("10:00", cid=a)]
    if order == "grouped":
        recs.reverse()  # a's 10:00 first, then b's 09:00: behind it if on one partition
    path = tmp_path / "h.jsonl"
    write_history(path, recs)
    assert judged_otherwise(path, 2, partitioner) == expect
