"""The floor of a worker built on faust's agents and streams (the worker's shell until
the batch shell replaced it): one agent with ``take_events`` batches, no state, one
output record per input record sent straight to the producer. What is left between
this and the raw consume loop is faust's per-record path. Started by
bench/bench_peers.py with the same environment as naive_faust.py:

    NAIVE_APP_ID, NAIVE_BOOTSTRAP, NAIVE_PARTITIONS, NAIVE_INPUTS (comma-separated),
    NAIVE_OUTPUT, NAIVE_DATA_DIR
    python bench/peers/faust_passthrough.py worker -l warn
"""

from __future__ import annotations

import os

import faust
from peer_env import BATCHED, faust_conf

app = faust.App(os.environ["NAIVE_APP_ID"], **faust_conf(**BATCHED))
inputs = app.topic(
    *os.environ["NAIVE_INPUTS"].split(","),
    key_serializer="raw",
    value_serializer="raw",
    acks=False,
)
OUTPUT = os.environ["NAIVE_OUTPUT"]


@app.agent(inputs, concurrency=1)
async def passthrough(stream):  # type: ignore[no-untyped-def]
    send = app.producer.send
    async for events in stream.take_events(500, 0.005):
        for event in events:
            await send(OUTPUT, event.message.key, b"1", None, None, None)


if __name__ == "__main__":
    app.main()
