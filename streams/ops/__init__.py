"""Operator tools over Kafka: inspect, explain, release, stats, capture, verify,
policy versions, producing a history file into the topics, the demo. Blocking; they
never import the worker."""
