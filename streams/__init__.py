"""trigger-sanity: stop contradictory marketing triggers before they reach a customer.

The path of a module says what it may touch (``make lint`` enforces it with
import-linter; the contracts are in ``pyproject.toml``):

- ``core``: the decision core. Pure: no Kafka, no asyncio, no settings, no wall
  clock (time is passed in). A rule is found from its id in ``core/rules.py``.
- ``contract``: the wire format: the topic registry, decoding input bytes, rendering
  every output record, raw-JSON splicing, history files, the partitioner. Pure.
- ``processing``: the one processor (decode, route, ingest, release, render) and the
  watermarks (idleness, progress markers), used by the worker and the offline replay
  alike. Pure.
- ``offline``: replaying a history file without Kafka (one process or several), the
  HTML report, the generators. Pure; blocks only on files.
- ``kafka``: Kafka clients: admin, readers without a group, committed offsets, the
  batch consumer, and every private faust/aiokafka name we rely on.
- ``worker``: the faust app: table store, batches, delivery, idle checks,
  maintenance, web pages. May block only off the event loop.
- ``ops``: operator tools over Kafka (inspect, explain, release, stats, capture,
  verify, policy versions, producing a history, the demo). Blocking; never the worker.
- ``cli``: thin command-line adapters. Nothing imports it.

Top-level modules shared by all: ``settings`` (configuration), ``errors`` (the
exception tree), ``hints`` (command lines to paste in messages), ``logs``.
"""

__version__ = "0.1.0"
