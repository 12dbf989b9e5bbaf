"""Which partition a customer belongs to (``streams.core.partitioning``, where the
engine needs it too: identity links put a customer's facts on other partitions)."""

from streams.core.partitioning import JAVA_SEED, murmur2, partition_for

__all__ = ["JAVA_SEED", "murmur2", "partition_for"]
