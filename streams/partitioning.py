"""Which partition a customer belongs to: ``murmur2(customer_id) % N``.

The Java client's default partitioner (also kafka-python's and aiokafka's).
All input topics are co-partitioned by it, so one worker owns all of a
customer's state; the worker re-routes records that a producer with another
partitioner put elsewhere.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(customer_id: str, partitions: int) -> int:
    return (murmur2(customer_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
