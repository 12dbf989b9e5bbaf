"""Offline tools over history files, without Kafka: the replay (one process or
several, the same output), the HTML report, the synthetic and realistic generators
and the demo history. Built on ``processing``; may block on files, never on Kafka."""
