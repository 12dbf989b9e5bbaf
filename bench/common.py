"""What the benchmarks share: the broker, a deployment of their own, a backlog, the worker.

Every benchmark that runs against Kafka needs the same few steps (find or start a
broker, make fresh topics so that runs never see each other's records, produce a
generated history, run ``trigger-sanity worker`` as a real process, read the outputs
back with their broker timestamps). They live here once so that a change to how the
worker is started or how a backlog is produced reaches every benchmark alike.

The scripts run as ``python bench/NAME.py``: this directory is then first on
``sys.path`` and ``import common`` finds this module.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streams.contract.history import write_history
from streams.contract.topics import INPUT_ROLES
from streams.kafka.admin import create_topics
from streams.offline.generator import generate
from streams.ops.produce import produce_history
from streams.settings import Settings, isolated_env, settings_from_env

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUTPUT_ROLES = ("send_queue", "suppressed")
"""Where every candidate's decision goes: one record in one of these per message_id."""

N = TypeVar("N", int, float)


def pct(values: Sequence[N], p: float) -> N | float:
    """The ``p`` quantile (nearest rank below), NaN for no values: a benchmark prints
    what it has rather than fail on an empty run."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def arguments(
    doc: str | None, customers: int, timeout: float, json_name: str | None = None
) -> argparse.ArgumentParser:
    """The options every backlog benchmark takes, with its own defaults; it adds its own."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=customers)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=timeout, help="seconds to wait, at most")
    if json_name:
        ap.add_argument("--json", type=Path, default=RESULTS / json_name)
    return ap


def add_settings_argument(ap: argparse.ArgumentParser, example: str) -> None:
    """``--set NAME=VALUE`` (repeatable): a worker setting for the run; ``settings_of``
    gives them as deployment overrides."""
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a worker setting (TRIGGER_SANITY_NAME), e.g. {example}",
    )


def settings_of(args: argparse.Namespace) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in args.set)


def bootstrap() -> str:
    """KAFKA_BOOTSTRAP_SERVERS, or the project's local broker on LOCAL_KAFKA_PORT (started
    if it is not running): the benchmarks need no Docker and no cluster of their own."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given
    port = os.environ.get("LOCAL_KAFKA_PORT", "9092")
    tool = ROOT / "tools" / "kafka" / "local_kafka.py"
    subprocess.run([sys.executable, str(tool), "start", "--port", port], check=True)
    return f"127.0.0.1:{port}"


def deployment(
    prefix: str, servers: str | None = None, **overrides: str
) -> tuple[dict[str, str], Settings]:
    """The environment and settings of a deployment nobody else uses (app id and topic
    names start with ``prefix`` and a random suffix), its topics created. The caller's
    own ``TRIGGER_SANITY_*`` variables are dropped: a benchmark must not measure
    whatever the shell it was started from happens to configure."""
    run = f"{prefix}{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_SANITY_")}
    env.update(isolated_env(run, servers or bootstrap(), **overrides))
    settings = settings_from_env(env)
    # Generated histories carry old event times as record timestamps: keep them whatever
    # the broker's time retention.
    create_topics(settings, log=False, configs={"retention.ms": "-1"})
    atexit.register(drop_topics, settings, run)
    return env, settings


def drop_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (a deployment's, its changelog
    and a peer's included), when the benchmark exits. A day of runs otherwise leaves
    thousands of partitions behind, and the local broker runs out of open files (seen
    here: 12,254 partitions, "Too many open files", the broker shut itself down)."""
    try:
        admin = KafkaAdminClient(**settings.kafka_client_kwargs())
    except KafkaError as exc:
        print(f"could not delete the topics starting with {prefix!r}: {exc}", file=sys.stderr)
        return
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names)
    except KafkaError as exc:
        print(f"could not delete the topics starting with {prefix!r}: {exc}", file=sys.stderr)
    finally:
        admin.close()


def produce_backlog(
    settings: Settings,
    customers: int,
    seed: int = 5,
    kind: str = "tidy",
    features: frozenset[str] | None = None,
) -> tuple[int, int]:
    """A generated history produced as fast as possible into the deployment's input
    topics (murmur2-keyed, idempotent). Returns (input records, candidates). ``kind``:
    ``tidy`` (``generate``), ``realistic`` (the field cases), ``links`` (the field cases
    with a third of the purchases by linked guests, and the link stories). With
    ``features`` (bench/features.py), the identities records are there only if ``links``
    is on: tidy with guest checkouts, or the field cases with every feature's stories."""
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "h.jsonl"
        if features is not None and kind == "tidy":
            from features import tidy_records

            records = tidy_records(customers, features, seed=seed)
            write_history(history, records)
            candidates = sum(1 for r in records if r["topic"] == "outbound")
        elif features is not None:
            from features import write_input

            _n, candidates = write_input(history, customers, features, seed)
        elif kind == "tidy":
            records = generate(customers, seed=seed)
            write_history(history, records)
            candidates = sum(1 for r in records if r["topic"] == "outbound")
        else:
            from streams.offline.scenarios import write_realistic

            _n, candidates = write_realistic(history, Path(tmp) / "t.jsonl", customers, seed,
                                             links=kind == "links")  # fmt: skip
        producer = KafkaProducer(
            linger_ms=50, batch_size=512 * 1024, **settings.kafka_producer_kwargs()
        )
        n, _bad = produce_history(history, producer, {r: settings.topics[r] for r in INPUT_ROLES})
        producer.close()
    return n, candidates


@dataclass(frozen=True)
class Sender:
    """A producer as the benchmarks use it: send(topic, key, value, timestamp_ms)."""

    send: Callable[[str, bytes | None, bytes, int], None]
    flush: Callable[[], None]
    close: Callable[[], None]


def kafka_python_sender(settings: Settings, linger_ms: int = 2) -> Sender:
    """kafka-python as the contract asks producers to be: murmur2-keyed (its default),
    idempotent, acknowledged by all replicas (``Settings.kafka_producer_kwargs``). Costs
    a lot of CPU per record (pure Python, and its I/O thread wakes every linger)."""
    p = KafkaProducer(linger_ms=linger_ms, **settings.kafka_producer_kwargs())

    def send(topic: str, key: bytes | None, value: bytes, ts: int) -> None:
        p.send(topic, key=key, value=value, timestamp_ms=ts)

    return Sender(send, p.flush, p.close)


def librdkafka_sender(settings: Settings, linger_ms: int = 2, **conf: str | bool) -> Sender:
    """confluent-kafka (librdkafka, in C): a fraction of kafka-python's CPU. Its default
    partitioner is crc32, not the contract's murmur2: pass ``partitioner="murmur2_random"``
    for a producer that partitions right. Connects with bootstrap servers only (PLAINTEXT)."""
    from confluent_kafka import Producer

    p = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "linger.ms": linger_ms, "acks": "all"}
        | conf
    )

    def send(topic: str, key: bytes | None, value: bytes, ts: int) -> None:
        p.produce(topic, key=key, value=value, timestamp=ts)
        p.poll(0)

    def flush() -> None:
        p.flush()

    return Sender(send, flush, flush)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_seconds(pid: int) -> float:
    """Seconds the process's main thread (the worker's event loop) was ready to run but
    waited for a CPU (/proc schedstat, Linux): on a machine shared with the broker and
    the producer, a worker that falls behind while this grows is short of CPU, not busy
    waiting for something."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def start_worker(
    env: dict[str, str], log: IO[bytes] | int = subprocess.DEVNULL, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``trigger-sanity worker`` as its own process, as it runs in production (``prefix``:
    a wrapper such as a profiler)."""
    cmd = [*prefix, sys.executable, "-m", "streams.cli", "worker"]
    env = {**env, "PYTHONUNBUFFERED": "1"}  # its log is read while it runs (wait_until_ready)
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (a clean stop publishes and commits), SIGKILL if it does not end in time."""
    stop_workers([proc], timeout)


def stop_workers(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """``stop_worker`` for workers of one group, signalled all at once: one stopping
    before the others would hand its partitions over to them first."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_ready(log_path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    """Seconds until the worker logs ``state recovered`` (it owns its partitions and reads
    them; needs log level INFO). Exits the benchmark if it dies or never gets there."""
    t0 = time.monotonic()
    while b"state recovered" not in log_path.read_bytes():
        if time.monotonic() - t0 > timeout or proc.poll() is not None:
            raise SystemExit(f"the worker did not start: see {log_path}")
        time.sleep(0.05)  # polling the worker's log until it owns its partitions
    return time.monotonic() - t0


def drain(
    settings: Settings,
    roles: tuple[str, ...],
    want: int,
    timeout: float,
    stamps: list[int] | None = None,
    arrivals: list[float] | None = None,
) -> list[bytes]:
    """Read ``want`` records of the topics from the beginning (committed ones only);
    their broker timestamps (producer CreateTime: when the worker sent each) go to
    ``stamps`` if given, and when this reader got each (``time.monotonic``; with
    transactions, after the commit) to ``arrivals``."""
    consumer = KafkaConsumer(
        enable_auto_commit=False, consumer_timeout_ms=300, **settings.kafka_consumer_kwargs()
    )
    tps = [TopicPartition(settings.topics[r], p) for r in roles for p in range(settings.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for r in consumer:
            out.append(r.value)
            if stamps is not None:
                stamps.append(r.timestamp)
            if arrivals is not None:
                arrivals.append(time.monotonic())
    consumer.close()
    return out


def stamps(
    bootstrap_servers: str,
    topics: list[str],
    want: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> list[int]:
    """Broker timestamps of the first ``want`` records of ``topics`` (waits for them, as
    long as ``proc``, which writes them, runs)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=500
    )
    tps = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list[int] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        out.extend(r.timestamp for r in consumer)
        if proc is not None and proc.poll() is not None:
            break
    consumer.close()
    return out


def decision_of(value: dict[str, Any]) -> tuple[str, str]:
    """(message_id, decided_at) of a send-queue or a suppressed record: a sent message
    carries them in ``sanity``, a suppression wraps the message."""
    if "sanity" in value:
        return value["message_id"], value["sanity"]["decided_at"]
    return value["message"]["message_id"], value["decided_at"]


def write_result(path: Path, result: dict[str, Any]) -> None:
    """The JSON result, stamped with when and on what it was measured."""
    stamped = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores",
        **result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    print(f"\nwritten: {path}")
