"""The peer: the same per-customer counter in quix-streams (librdkafka underneath, RocksDB
state with a changelog, checkpoints). One output record per input record. Started by
bench/bench_peers.py with the same environment as naive_faust.py.
"""

from __future__ import annotations

import os
from typing import Any

from quixstreams import Application
from quixstreams.state import State


def _count(value: Any, state: State) -> str:
    n = int(state.get("n", 0)) + 1
    state.set("n", n)
    return str(n)


def main() -> None:
    app = Application(
        broker_address=os.environ["NAIVE_BOOTSTRAP"],
        consumer_group=os.environ["NAIVE_APP_ID"],
        auto_offset_reset="earliest",
        state_dir=os.environ["NAIVE_DATA_DIR"],
        loglevel="WARNING",
    )
    out = app.topic(os.environ["NAIVE_OUTPUT"], value_serializer="str", key_serializer="bytes")
    frames = []
    for name in os.environ["NAIVE_INPUTS"].split(","):
        topic = app.topic(name, value_deserializer="bytes", key_deserializer="bytes")
        frames.append(app.dataframe(topic))
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(_count, stateful=True)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
