"""The partitioner must agree with the Java client's, byte for byte: a worker that
disagrees re-routes every record (or misses co-partitioned state)."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.contract.partitioning import murmur2, partition_for

# Java client values (org.apache.kafka.clients.producer.internals.DefaultPartitioner,
# 1000 partitions), as kafka-python's own partitioner test lists them
JAVA_PARTITIONS_OF_1000 = [
    ("empty_key", b"", 681),
    ("one_byte", b"a", 524),
    ("two_bytes", b"ab", 434),
    ("three_bytes", b"abc", 107),
    ("nine_bytes_crossing_a_block", b"123456789", 566),
    ("nul_and_space", b"\x00 ", 742),
]


@pytest.mark.parametrize(
    ("key", "expected"),
    [pytest.param(k, e, id=name) for name, k, e in JAVA_PARTITIONS_OF_1000],
)
def test_the_partition_of_a_key_is_the_java_clients(key: bytes, expected: int) -> None:
    assert (murmur2(key) & 0x7FFFFFFF) % 1000 == expected
    if key.isascii():
        assert partition_for(key.decode(), 1000) == expected


def test_the_c_hash_equals_kafka_pythons_on_random_keys_of_every_length() -> None:
    rnd = random.Random(7)
    keys = [rnd.randbytes(n % 67) for n in range(20_000)]
    keys += [f"c-{i:07d}".encode() for i in range(0, 1_000_000, 97)]
    keys += ["kundin-é-ø-日本".encode(), b"\xff" * 13]
    different = [k for k in keys if murmur2(k) != kafka_python_murmur2(k)]
    assert different == []


def test_a_non_ascii_customer_id_is_hashed_as_its_utf8_bytes() -> None:
    cid = "kundin-é"
    assert partition_for(cid, 8) == (kafka_python_murmur2(cid.encode()) & 0x7FFFFFFF) % 8
