"""One processor for the worker and the offline replay (decode, route, ingest,
release, render) and the watermarks that move stream time (idleness, progress
markers). Pure: the shell passes in what only Kafka knows and writes what comes back."""
