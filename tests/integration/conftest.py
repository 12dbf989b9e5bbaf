"""One real Kafka broker for the whole session, and helpers to run the worker against it.

Where the broker comes from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (any real cluster);
2. testcontainers' Kafka module when a Docker engine answers;
3. otherwise the project's own local broker (tools/kafka/local_kafka.py: Apache
   Kafka 3.9 from Maven Central, KRaft, 127.0.0.1), stopped at the end if this
   session started it.
Never a mock. Each test gets fresh topic names and its own consumer group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streams.contract.topics import INPUT_ROLES
from streams.kafka.admin import create_topics
from streams.ops.produce import produce_history
from streams.settings import Settings, isolated_env, settings_from_env

ROOT = Path(__file__).resolve().parents[2]
LOCAL_KAFKA = ROOT / "tools" / "kafka" / "local_kafka.py"

FEED_RATE = 2500.0
"""Input records/s for tests that fail or move workers while records arrive: a worker
decides about 6,000 records/s here, so a backlog of the tests' size produced up front
(~21,000 records) was nearly all read before the first kill or the second worker landed;
at this rate it arrives over ~8 s."""


class Feed:
    """A history produced in a background thread (at ``rate`` records/s), or at once
    before the test goes on (``rate`` None). ``wait`` gives the records produced, or
    raises what producing raised."""

    def __init__(self, produce: Callable[[], int], rate: float | None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed")
        self._produced = self._pool.submit(produce)
        self._pool.shutdown(wait=False)
        if rate is None:
            self.wait()

    def wait(self, timeout: float = 300) -> int:
        return self._produced.result(timeout)


def feed_history(settings: Settings, path: Path, rate: float | None = FEED_RATE) -> Feed:
    """Produce a history file into the input topics (kafka-python, murmur2 keys), paced."""

    def produce() -> int:
        p = KafkaProducer(linger_ms=20, batch_size=256 * 1024, **settings.kafka_producer_kwargs())
        started = time.monotonic()

        def pace(sent: int) -> None:
            if rate is not None and sent % 250 == 0:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the input to a live rate, not waiting out a race

        try:
            n, bad = produce_history(
                path, p, {r: settings.topics[r] for r in INPUT_ROLES}, progress=pace
            )
        finally:
            p.close()
        assert not bad, bad[:5]
        return n

    return Feed(produce, rate)


pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers
        from docker.errors import DockerException
    except ImportError:
        return False
    try:
        docker.from_env(timeout=3).ping()
    except (DockerException, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    port = os.environ.get("LOCAL_KAFKA_PORT", "9092")
    status = subprocess.run(
        [sys.executable, str(LOCAL_KAFKA), "status", "--port", port],
        capture_output=True,
        check=False,
    )
    already = status.returncode == 0
    subprocess.run([sys.executable, str(LOCAL_KAFKA), "start", "--port", port], check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if not already:
            subprocess.run([sys.executable, str(LOCAL_KAFKA), "stop", "--port", port], check=False)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on when asked (the OS's choice), for
    a worker's web server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    """A fresh, isolated trigger-sanity deployment on the session's broker."""

    settings: Settings
    env: dict[str, str]
    tmp: Path
    started: list[WorkerProc] = field(default_factory=list)  # killed at teardown if left

    def producer(self) -> KafkaProducer:
        return KafkaProducer(linger_ms=5, **self.settings.kafka_producer_kwargs())  # type: ignore[arg-type]

    def produce(self, records: list[dict[str, Any]]) -> None:
        """Produce history-style records; ``raw`` bytes are sent exactly as given."""
        from streams.contract.history import parse_line

        p = self.producer()
        for rec in records:
            topic = self.settings.topics[rec["topic"]]
            if "raw" in rec:  # bytes exactly as given (malformed input)
                p.send(
                    topic,
                    key=rec.get("key"),
                    value=rec["raw"],
                    partition=rec.get("partition"),
                    timestamp_ms=rec.get("timestamp_ms"),
                )
                continue
            hr = parse_line(0, orjson.dumps({k: v for k, v in rec.items() if k != "partition"}))
            assert hr is not None and not hasattr(hr, "error"), hr
            ts = hr.record_ms if hr.record_ms is not None else hr.event_ms  # type: ignore[union-attr]
            p.send(
                topic,
                key=hr.key,
                value=hr.value,
                timestamp_ms=ts,  # type: ignore[union-attr]
                partition=rec.get("partition"),
            )
        p.flush()
        p.close()

    def committed(self, role: str) -> int:
        """Sum of the worker group's committed offsets on one input topic."""
        admin = KafkaAdminClient(**self.settings.kafka_client_kwargs())  # type: ignore[arg-type]
        try:
            offsets = admin.list_consumer_group_offsets(self.settings.app_id)
        finally:
            admin.close()
        name = self.settings.topics[role]
        return sum(m.offset for tp, m in offsets.items() if tp.topic == name and m.offset > 0)

    def wait_committed(
        self, role: str, at_least: int, worker: WorkerProc, timeout: float = 300
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.committed(role) >= at_least:
                    return
            except KafkaError:  # e.g. the group coordinator still loading: ask again
                pass
            assert time.monotonic() < deadline, worker.tail()
            assert worker.proc.poll() is None, worker.tail()
            time.sleep(0.5)  # polling a broker-side fact, bounded by the deadline

    def worker(self, policy: Path | None = None) -> WorkerProc:
        env = dict(self.env)
        if policy is not None:
            env["TRIGGER_SANITY_POLICY_FILE"] = str(policy)
        log = self.tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        fh = open(log, "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProc(proc, log, fh)
        self.started.append(worker)
        return worker

    def _from_beginning(self, roles: tuple[str, ...]) -> tuple[KafkaConsumer, list[TopicPartition]]:
        """A consumer (committed records only) on every partition of these output
        topics, at their beginning."""
        consumer = KafkaConsumer(
            enable_auto_commit=False,
            consumer_timeout_ms=500,
            **self.settings.kafka_consumer_kwargs(),
        )  # type: ignore[arg-type]
        tps = [
            TopicPartition(self.settings.topics[r], p)
            for r in roles
            for p in range(self.settings.partitions)
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return consumer, tps

    def read_all(self, roles: tuple[str, ...]) -> dict[str, list[Any]]:
        """Every record on output topics up to their end offsets as of now."""
        got: dict[str, list[Any]] = {r: [] for r in roles}
        consumer, tps = self._from_beginning(roles)
        try:
            ends = consumer.end_offsets(tps)
            names = {self.settings.topics[r]: r for r in roles}
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                for rec in consumer:
                    got[names[rec.topic]].append(rec)
        finally:
            consumer.close()
        return got

    def collect(
        self,
        roles: tuple[str, ...],
        until: Callable[[dict[str, list[Any]]], bool],
        timeout: float = 120.0,
        worker: WorkerProc | None = None,
    ) -> dict[str, list[Any]]:
        """Read output topics from the beginning until ``until(records)`` or the timeout."""
        got: dict[str, list[Any]] = {r: [] for r in roles}
        consumer, _tps = self._from_beginning(roles)
        try:
            names = {self.settings.topics[r]: r for r in roles}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for rec in consumer:
                    got[names[rec.topic]].append(rec)
                if until(got):
                    return got
                if worker is not None and worker.proc.poll() is not None:
                    raise AssertionError(
                        f"worker exited with {worker.proc.returncode}:\n{worker.tail()}"
                    )
        finally:
            consumer.close()
        counts = {r: len(v) for r, v in got.items()}
        raise AssertionError(
            f"timed out after {timeout}s with {counts}\n" + (worker.tail() if worker else "")
        )


_RECONNECT_NOISE = (
    "Unable connect to node",
    "NodeNotReadyError",
    "Unable to update metadata",
    "Unable to request metadata",
    "Group Coordinator Request failed",
)


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: Path
    fh: Any

    def tail(self, n: int = 60) -> str:
        """The worker log's last lines, without the client's reconnect chatter (with the
        broker down it would fill the whole tail)."""
        if not self.fh.closed:
            self.fh.flush()
        lines = [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if not any(noise in line for noise in _RECONNECT_NOISE)
        ]
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown hooks, nothing flushed."""
        self.proc.kill()
        self.proc.wait()
        self.fh.close()


@pytest.fixture
def ts_env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    run = f"t{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_SANITY_")}
    env.update(
        isolated_env(
            run,
            kafka_bootstrap,
            partitions="4",
            data_dir=str(tmp_path / "data"),
            log_level="INFO",
            idle_check_interval="0.5",
            commit_interval="0.5",
            session_timeout="6",
        )
    )
    settings = settings_from_env(env)
    # Histories carry old event times as record timestamps: keep them whatever
    # the broker's time retention.
    create_topics(settings, log=False, configs={"retention.ms": "-1"})
    deployment = Env(settings, env, tmp_path)
    yield deployment
    for worker in deployment.started:  # a failed test must not leave a worker running
        if worker.proc.poll() is None:
            worker.kill()
