"""The peer baseline "what a straightforward faust app does": one agent over the five
input topics keeping a per-customer counter in a changelogged table, one output record
per input record. Started by bench/bench_peers.py with its settings in the environment:

    NAIVE_APP_ID, NAIVE_BOOTSTRAP, NAIVE_PARTITIONS, NAIVE_INPUTS (comma-separated),
    NAIVE_OUTPUT, NAIVE_DATA_DIR
    python bench/peers/naive_faust.py worker -l warn
"""

from __future__ import annotations

import os

import faust
from peer_env import faust_conf

app = faust.App(os.environ["NAIVE_APP_ID"], **faust_conf())
inputs = app.topic(
    *os.environ["NAIVE_INPUTS"].split(","), key_serializer="raw", value_serializer="raw"
)
output = app.topic(os.environ["NAIVE_OUTPUT"], key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=int(os.environ["NAIVE_PARTITIONS"]))


@app.agent(inputs)
async def count(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        key = (event.key or b"").decode()
        counts[key] += 1
        await output.send(key=event.key, value=str(counts[key]).encode())


if __name__ == "__main__":
    app.main()
