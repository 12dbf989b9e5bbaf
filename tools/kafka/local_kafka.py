#!/usr/bin/env python3
"""Run a real single-node Apache Kafka 3.9 broker (KRaft) on 127.0.0.1, without Docker.

    python tools/kafka/local_kafka.py start [--port 9092]   # resolve jars, format, start, wait
    python tools/kafka/local_kafka.py status
    python tools/kafka/local_kafka.py stop
    python tools/kafka/local_kafka.py secure [--port 9092]  # how to reach the TLS listeners

Listeners, for a client port P: PLAINTEXT on P, the KRaft controller on P+1, SSL on
P+2 and SASL_SSL with SCRAM-SHA-512 on P+3. Their key pair and certificate are made
at the first start with the JDK's ``keytool`` (nothing is downloaded), the SCRAM user
with a random password when the storage is formatted; ``secure`` prints the
``TRIGGER_SANITY_*`` variables that reach them (``--json`` for tests).

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
import json
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


SCRAM_USER = "trigger-sanity"


def tls_dir(port: int) -> Path:
    return HOME / f"tls-{port}"


def secure_info(port: int) -> dict[str, str]:
    """How a client reaches the TLS listeners of the broker on ``port``."""
    tls = tls_dir(port)
    return {
        "ssl_port": str(port + 2),
        "sasl_ssl_port": str(port + 3),
        "cafile": str(tls / "ca.pem"),
        "username": SCRAM_USER,
        "password": (tls / "scram-password").read_text().strip(),
        "mechanism": "SCRAM-SHA-512",
    }


def make_tls(port: int) -> Path:
    """A self-signed key pair for 127.0.0.1 and localhost (keytool, PKCS12), its
    certificate as the clients' CA file, the keystore's and the SCRAM user's random
    passwords. Made once per port; kept with the broker's data."""
    tls = tls_dir(port)
    store = tls / "broker.p12"
    if store.exists() and (tls / "ca.pem").exists() and (tls / "scram-password").exists():
        return tls
    keytool = shutil.which("keytool")
    if keytool is None:
        sys.exit("[local-kafka] keytool (part of the JDK) is not installed: install JDK 17")
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(parents=True)
    secret = base64.urlsafe_b64encode(os.urandom(18)).decode()
    (tls / "store-password").write_text(secret)
    (tls / "scram-password").write_text(base64.urlsafe_b64encode(os.urandom(18)).decode())
    steps = [
        [keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-validity", "3650", "-dname", "CN=localhost", "-ext",
         "SAN=IP:127.0.0.1,DNS:localhost", "-keystore", str(store), "-storetype", "PKCS12",
         "-storepass", secret, "-keypass", secret],
        [keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(store),
         "-storepass", secret, "-file", str(tls / "ca.pem")],
    ]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            sys.exit(f"[local-kafka] keytool failed (exit {res.returncode}): {res.stderr.strip()}")
    return tls


def write_config(port: int, controller_port: int) -> Path:
    data = HOME / f"data-{port}"
    data.mkdir(parents=True, exist_ok=True)
    props = HOME / f"server-{port}.properties"
    tls = make_tls(port)
    secret = (tls / "store-password").read_text().strip()
    ssl_port, sasl_port = port + 2, port + 3
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},"
                f"SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},"
                f"SASL_SSL://127.0.0.1:{sasl_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                "SSL:SSL,SASL_SSL:SASL_SSL",
                "inter.broker.listener.name=PLAINTEXT",
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={tls / 'broker.p12'}",
                f"ssl.keystore.password={secret}",
                f"ssl.key.password={secret}",
                "ssl.client.auth=none",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
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
    formatted_before = (HOME / f"data-{port}" / "meta.properties").exists()
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
            # the SCRAM user of the SASL_SSL listener (storage formatted before this
            # release gets it from add_scram_user once the broker runs)
            "--add-scram",
            f"SCRAM-SHA-512=[name={SCRAM_USER},password={secure_info(port)['password']}]",
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
            if formatted_before:
                add_scram_user(port)
            say(
                f"broker ready on 127.0.0.1:{port} (pid {proc.pid}); SSL on {port + 2}, "
                f"SASL_SSL (SCRAM-SHA-512) on {port + 3}: `local_kafka.py secure` says how"
            )
            return 0
        time.sleep(0.3)  # polling a process that is starting, bounded by the deadline
    stop(port)
    sys.exit(
        f"[local-kafka] broker did not answer a metadata request within {timeout:.0f}s; see {log}"
    )


def add_scram_user(port: int) -> None:
    """The SCRAM user, on a storage formatted before the TLS listeners existed."""
    res = subprocess.run(
        java_cmd(
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            f"127.0.0.1:{port}",
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            SCRAM_USER,
            "--add-config",
            f"SCRAM-SHA-512=[password={secure_info(port)['password']}]",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        sys.exit(f"[local-kafka] adding the SCRAM user failed: {res.stderr.strip()[-500:]}")


def secure(port: int, as_json: bool) -> int:
    if not (tls_dir(port) / "scram-password").exists():
        sys.exit(f"[local-kafka] no TLS material for port {port}: run `start --port {port}` first")
    info = secure_info(port)
    if as_json:
        print(json.dumps(info))
        return 0
    print(
        f"# SSL listener\n"
        f"TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:{info['ssl_port']}\n"
        f"TRIGGER_SANITY_SECURITY_PROTOCOL=SSL\n"
        f"TRIGGER_SANITY_SSL_CAFILE={info['cafile']}\n"
        f"# SASL_SSL listener\n"
        f"TRIGGER_SANITY_BOOTSTRAP_SERVERS=127.0.0.1:{info['sasl_ssl_port']}\n"
        f"TRIGGER_SANITY_SECURITY_PROTOCOL=SASL_SSL\n"
        f"TRIGGER_SANITY_SSL_CAFILE={info['cafile']}\n"
        f"TRIGGER_SANITY_SASL_MECHANISM={info['mechanism']}\n"
        f"TRIGGER_SANITY_SASL_USERNAME={info['username']}\n"
        f"TRIGGER_SANITY_SASL_PASSWORD={info['password']}"
    )
    return 0


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
    ap.add_argument("command", choices=["start", "stop", "status", "fetch", "secure"])
    ap.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_KAFKA_PORT", "9092")),
        help="client port (controller uses port+1); default 9092 or $LOCAL_KAFKA_PORT",
    )
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    ap.add_argument("--json", action="store_true", help="secure: one JSON object (for tests)")
    args = ap.parse_args(argv)
    if args.command == "start":
        return start(args.port, args.timeout)
    if args.command == "stop":
        return stop(args.port)
    if args.command == "secure":
        return secure(args.port, args.json)
    if args.command == "fetch":
        fetch_jars()
        return 0
    return status(args.port)


if __name__ == "__main__":
    sys.exit(main())
