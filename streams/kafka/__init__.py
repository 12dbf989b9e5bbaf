"""Kafka clients and the faust/aiokafka seams: admin, readers without a consumer group,
committed offsets, the batch consumer, and ``faust_internals`` (every private name we
rely on, in one place). Blocking calls here are documented as such."""
