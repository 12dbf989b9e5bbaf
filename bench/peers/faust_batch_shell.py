"""The floor of the worker's own shell: faust's consumer with the worker's batch shell
(streams.kafka.batch_consumer: each fetched batch handed to one coroutine, no faust agent and no
per-record event), no state, one output record per input record sent straight to the
producer. Next to faust_passthrough.py it shows what faust's per-record path costs;
what is left between this and the worker is the worker. Started by
bench/bench_peers.py with the same environment as naive_faust.py:

    NAIVE_APP_ID, NAIVE_BOOTSTRAP, NAIVE_PARTITIONS, NAIVE_INPUTS (comma-separated),
    NAIVE_OUTPUT, NAIVE_DATA_DIR
    python bench/peers/faust_batch_shell.py worker -l warn
"""

from __future__ import annotations

import os
from typing import Any

from peer_env import BATCHED, faust_conf

from streams.kafka.batch_consumer import BatchSink, ShellApp, ShellHooks

hooks = ShellHooks()
app = ShellApp(
    os.environ["NAIVE_APP_ID"],
    shell=hooks,
    # the worker's default batch size
    **faust_conf(**BATCHED, broker_max_poll_records=500),
)
inputs = app.topic(
    *os.environ["NAIVE_INPUTS"].split(","),
    key_serializer="raw",
    value_serializer="raw",
    acks=False,
)
OUTPUT = os.environ["NAIVE_OUTPUT"]


async def handle(batch: list[Any], generation: int) -> None:
    send = app.producer.send
    for message in batch:
        await send(OUTPUT, message.key, b"1", None, None, None)


app.topics.add(inputs)
hooks.batch_sink = BatchSink(frozenset(inputs.topics), handle)

if __name__ == "__main__":
    app.main()
