"""The faust worker: the app and its table, the table store, batches, delivery
(publish and commit), the idle check, maintenance (sweeps, restore, stall probe) and
the web pages. Wires ``processing`` to Kafka; holds no rule logic."""
