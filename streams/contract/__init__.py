"""The wire format: the topic registry (name, key and value model of every topic),
decoding input bytes into the core's records, rendering every output record, splicing
into raw JSON, history files, and the partitioner. Pure: imports ``core`` and
``schemas`` only."""
