"""Which partition a customer belongs to: ``murmur2(customer_id) % N``.

The Java client's default partitioner (also kafka-python's and aiokafka's).
All input topics are co-partitioned by it, so one worker owns all of a
customer's state; the worker re-routes records that a producer with another
partitioner put elsewhere.

The hash is the ``murmurhash2`` package's MurmurHash2 (a compiled Rust extension,
abi3 wheels; a platform without a wheel needs a Rust toolchain to build it) with the
Java client's seed: an order of magnitude cheaper than kafka-python's pure-Python
``murmur2``, with the same values (``tests/unit/contract/test_partitioning.py``). It
is not cached: an ``lru_cache`` here held a (key, partitions) tuple per entry, and a
sweep over a million customers churned it, leaving the collector's youngest
generation so full that each collection stalled the event loop.
"""

from __future__ import annotations

from murmurhash2 import murmurhash2

# org.apache.kafka.common.utils.Utils.murmur2's seed
JAVA_SEED = 0x9747B28C


def murmur2(key: bytes) -> int:
    """The Java client's ``Utils.murmur2`` of ``key``, as an unsigned 32-bit value."""
    return murmurhash2(key, JAVA_SEED)


def partition_for(customer_id: str, partitions: int) -> int:
    """``Utils.toPositive(Utils.murmur2(key)) % partitions``, as the Java producer does."""
    return (murmurhash2(customer_id.encode("utf-8"), JAVA_SEED) & 0x7FFFFFFF) % partitions
