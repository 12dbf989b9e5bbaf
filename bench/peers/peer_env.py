"""The faust App settings every faust peer shares, from the environment bench_peers.py
sets (NAIVE_APP_ID, NAIVE_BOOTSTRAP, NAIVE_PARTITIONS, NAIVE_DATA_DIR): the peers differ
only in what they do with the records, never in how they reach the broker."""

from __future__ import annotations

import os
from typing import Any


def faust_conf(**extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(os.environ["NAIVE_APP_ID"], **faust_conf())``."""
    return {
        "broker": f"kafka://{os.environ['NAIVE_BOOTSTRAP']}",
        "store": "memory://",
        "datadir": os.environ["NAIVE_DATA_DIR"],
        "topic_partitions": int(os.environ["NAIVE_PARTITIONS"]),
        "topic_replication_factor": 1,
        "web_enabled": False,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        **extra,
    }


# what the batched peers add: the worker's producer batching
BATCHED = {"producer_linger": 0.005, "producer_max_batch_size": 512 * 1024}
