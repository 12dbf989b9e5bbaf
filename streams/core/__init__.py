"""The decision core: customer state, the rules (one function per rule id, in
``rules.py``), the policy, stream time, the engine that holds candidates and decides
them in deadline order, late evidence, the outbox. Pure: no Kafka, no asyncio, no
settings, no wall clock; it may import only the standard library, pydantic, orjson
and ``streams.errors``."""
