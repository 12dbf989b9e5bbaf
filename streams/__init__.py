"""trigger-sanity: stop contradictory marketing triggers before they reach a customer.

Layout (a newcomer finds a rule from its id in ``rules.py``):

- pure core, no Kafka, no wall clock: ``policy`` (windows, limits), ``clock``
  (stream time), ``state`` (per-customer facts), ``rules`` (one function per
  rule id), ``engine`` (holding, deadline ordering, late evidence),
  ``codec`` (bytes -> record or dead-letter), ``history`` (history files),
  ``replay`` (offline replay and producing into Kafka);
- the Kafka shell: ``topics`` (the registry), ``settings``, ``app`` (faust),
  ``admin`` (topic creation), ``cli``.
"""

__version__ = "0.1.0"
