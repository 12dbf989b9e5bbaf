#!/usr/bin/env python3
"""Run a real single-node Apache Kafka 3.9 broker (KRaft) on 127.0.0.1, without Docker.

    python tools/kafka/local_kafka.py start [--port 9092]   # resolve jars, format, start, wait
    python tools/kafka/local_kafka.py status
    python tools/kafka/local_kafka.py stop

The broker jars come from Maven Central via ``mvn`` (JDK 17 + Maven are all
it needs). Everything lives under ``.cache/kafka`` (override with
``LOCAL_KAFKA_HOME``). ``start`` is idempotent: a broker already answering
on the port is reused. Readiness means the broker answered a real Kafka
Metadata request, not that a port is open. Standard library only, so it
runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOME = Path(os.environ.get("LOCAL_KAFKA_HOME", ROOT / ".cache" / "kafka"))
LIBS = HOME / "libs"

LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


def say(msg: str) -> None:
    print(f"[local-kafka] {msg}", file=sys.stderr, flush=True)


def metadata_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send a Metadata v0 request (all topics) and check that a broker is listed."""
    client = b"local-kafka-probe"
    body = struct.pack(">hhih", 3, 0, 4242, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv(s, 4)
            size = struct.unpack(">i", head)[0]
            resp = _recv(s, size)
    except OSError:
        return False
    if len(resp) < 8:
        return False
    corr, n_brokers = struct.unpack(">ii", resp[:8])
    return corr == 4242 and n_brokers >= 1


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def fetch_jars() -> None:
    if LIBS.is_dir() and any(LIBS.glob("kafka_2.13-*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        sys.exit(
            "[local-kafka] Maven (mvn) is not installed: install it (e.g. apt-get install maven)"
        )
    if shutil.which("java") is None:
        sys.exit(
            "[local-kafka] Java is not installed: install JDK 17 "
            "(e.g. apt-get install openjdk-17-jdk)"
        )
    say(f"resolving Apache Kafka jars from Maven Central into {LIBS} ...")
    tmp = LIBS.with_name("libs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(HERE / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    res = subprocess.run(cmd, check=False)
    if res.returncode != 0:
        sys.exit(f"[local-kafka] mvn failed (exit {res.returncode}); see its output above")
    tmp.rename(LIBS)
    say(f"resolved {len(list(LIBS.glob('*.jar')))} jars")


def write_config(port: int, controller_port: int) -> Path:
    data = HOME / f"data-{port}"
    data.mkdir(parents=True, exist_ok=True)
    props = HOME / f"server-{port}.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",  # topics are created on purpose, co-partitioned
                "log.retention.hours=-1",
                "",
            ]
        )
    )
    (HOME / "log4j.properties").write_text(LOG4J)
    return props


def java_cmd(main: str, *args: str) -> list[str]:
    java = shutil.which("java") or "java"
    heap = os.environ.get("LOCAL_KAFKA_HEAP", "-Xms512m -Xmx1g").split()
    return [
        java,
        *heap,
        "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{HOME / 'log4j.properties'}",
        "-cp",
        f"{LIBS}/*",
        main,
        *args,
    ]


def pid_file(port: int) -> Path:
    return HOME / f"broker-{port}.pid"


def running_pid(port: int) -> int | None:
    pf = pid_file(port)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def start(port: int, timeout: float) -> int:
    if metadata_ok("127.0.0.1", port):
        say(f"a broker already answers on 127.0.0.1:{port}; reusing it")
        return 0
    fetch_jars()
    HOME.mkdir(parents=True, exist_ok=True)
    controller_port = port + 1
    props = write_config(port, controller_port)
    cid_file = HOME / f"cluster-id-{port}"
    if not cid_file.exists():
        cid_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    cluster_id = cid_file.read_text().strip()
    fmt = subprocess.run(
        java_cmd(
            "kafka.tools.StorageTool",
            "format",
            # one argument: an id may start with "-" (1 in 64 random ids), which the
            # tool's argument parser would take for an option
            f"--cluster-id={cluster_id}",
            "-c",
            str(props),
            "--ignore-formatted",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        sys.stderr.write(fmt.stdout + fmt.stderr)
        sys.exit(f"[local-kafka] formatting KRaft storage failed (exit {fmt.returncode})")
    log = HOME / f"broker-{port}.log"
    say(f"starting Kafka on 127.0.0.1:{port} (log: {log})")
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            java_cmd("kafka.Kafka", str(props)),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file(port).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            sys.stderr.write(tail)
            sys.exit(f"[local-kafka] the broker exited with code {proc.returncode}; log above")
        if metadata_ok("127.0.0.1", port):
            say(f"broker ready on 127.0.0.1:{port} (pid {proc.pid})")
            return 0
        time.sleep(0.3)  # polling a process that is starting, bounded by the deadline
    stop(port)
    sys.exit(
        f"[local-kafka] broker did not answer a metadata request within {timeout:.0f}s; see {log}"
    )


def stop(port: int) -> int:
    pid = running_pid(port)
    if pid is None:
        say(f"no broker started by this tool on port {port}")
        pid_file(port).unlink(missing_ok=True)
        return 0
    say(f"stopping broker pid {pid}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        say("broker did not stop within 30s; killing it")
        os.kill(pid, signal.SIGKILL)
    pid_file(port).unlink(missing_ok=True)
    return 0


def status(port: int) -> int:
    pid = running_pid(port)
    ok = metadata_ok("127.0.0.1", port)
    print(
        f"port {port}: {'answering' if ok else 'not answering'}; "
        f"{'pid ' + str(pid) if pid else 'not started by this tool'}"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["start", "stop", "status", "fetch"])
    ap.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_KAFKA_PORT", "9092")),
        help="client port (controller uses port+1); default 9092 or $LOCAL_KAFKA_PORT",
    )
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    args = ap.parse_args(argv)
    if args.command == "start":
        return start(args.port, args.timeout)
    if args.command == "stop":
        return stop(args.port)
    if args.command == "fetch":
        fetch_jars()
        return 0
    return status(args.port)


if __name__ == "__main__":
    sys.exit(main())
