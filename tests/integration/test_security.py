"""SASL_SSL (SCRAM-SHA-512) and SSL against the real broker, and every mismatch between
the client's security settings and a listener failing at once in one line.

The broker tools/kafka starts on client port P listens with PLAINTEXT on P, SSL on P+2
and SASL_SSL on P+3, with a certificate made by keytool at its first start
(``local_kafka.py secure --json`` says how to reach them). A broker from elsewhere
(``KAFKA_BOOTSTRAP_SERVERS``, testcontainers) has no such listeners: these tests are
skipped there, and run on every CI run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from streams.contract.history import write_history
from streams.kafka.admin import create_topics
from streams.offline.generator import generate
from streams.ops.verify import decision_key
from streams.settings import isolated_env, settings_from_env
from tests.integration.conftest import LOCAL_KAFKA, ROOT, Env
from tests.integration.live import cli

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def listeners(kafka_bootstrap: str) -> dict[str, str]:
    port = kafka_bootstrap.rsplit(":", 1)[-1]
    started_here = (ROOT / ".cache" / "kafka" / f"broker-{port}.pid").exists()
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or not started_here:
        pytest.skip("the broker was not started by tools/kafka here: it has no TLS listeners")
    out = subprocess.run(
        [sys.executable, str(LOCAL_KAFKA), "secure", "--port", port, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info: dict[str, str] = json.loads(out.stdout)
    info["plain"] = f"127.0.0.1:{port}"
    info["ssl"] = f"127.0.0.1:{info['ssl_port']}"
    info["sasl_ssl"] = f"127.0.0.1:{info['sasl_ssl_port']}"
    return info


def _ssl(info: dict[str, str]) -> dict[str, str]:
    return {"security_protocol": "SSL", "ssl_cafile": info["cafile"]}


def _sasl_ssl(info: dict[str, str], password: str | None = None) -> dict[str, str]:
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": info["cafile"],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": info["username"],
        "sasl_password": password or info["password"],
    }


def _env(bootstrap: str, run: str, tmp: Path, **security: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_SANITY_")}
    env.update(
        isolated_env(
            run,
            bootstrap,
            partitions="2",
            data_dir=str(tmp / "data"),
            idle_check_interval="0.5",
            commit_interval="0.5",
            session_timeout="6",
            **security,
        )
    )
    return env


MISMATCHES = [
    # (scenario, listener, security settings, what the one line must say)
    (
        "SCRAM against the plaintext listener",
        "plain",
        lambda i: {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                   "sasl_username": "u", "sasl_password": "p"},
        "is not a SASL listener",
    ),
    ("plaintext client at the SSL listener", "ssl", lambda i: {}, "is a TLS listener"),
    ("plaintext client at the SASL_SSL listener", "sasl_ssl", lambda i: {}, "is a TLS listener"),
    ("TLS client at the plaintext listener", "plain", _ssl, "closed the TLS handshake"),
    (
        "broker certificate not trusted (no CA file)",
        "ssl",
        lambda i: {"security_protocol": "SSL"},
        "is not trusted",
    ),
    # The broker closes the connection right after refusing; when the client sees the
    # closed socket before the refusal, the line names both causes (either way: one line).
    (
        "wrong password",
        "sasl_ssl",
        lambda i: _sasl_ssl(i, password="not-the-password"),
        "user name or password",
    ),
    (
        "a mechanism the listener does not enable",
        "sasl_ssl",
        lambda i: {**_sasl_ssl(i), "sasl_mechanism": "SCRAM-SHA-256"},
        "enable SCRAM-SHA-256",
    ),
    (
        "TLS without SASL at the SASL_SSL listener",
        "sasl_ssl",
        _ssl,
        "asks clients to authenticate",
    ),
    (
        "a SASL mechanism with the protocol left at PLAINTEXT",
        "plain",
        lambda i: {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u", "sasl_password": "p"},
        "needs security_protocol SASL_SSL or SASL_PLAINTEXT",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "listener", "security", "says"), MISMATCHES, ids=[m[0] for m in MISMATCHES]
)
def test_a_security_mismatch_fails_at_once_in_one_line_naming_it(
    listeners: dict[str, str], tmp_path: Path, scenario: str, listener: str, security, says: str
) -> None:
    env = _env(listeners[listener], "tsec", tmp_path, **security(listeners))
    res = cli(env, "topics", "list")
    assert res.returncode == 2, (scenario, res.stdout, res.stderr)
    assert says in res.stderr, (scenario, res.stderr)
    assert "Traceback" not in res.stderr, scenario
    if "needs security_protocol" not in says:  # settings errors: a header, one line a field
        assert len(res.stderr.strip().splitlines()) == 1, (scenario, res.stderr)
    assert "not-the-password" not in res.stderr + res.stdout


@pytest.mark.parametrize(
    "verb",
    [
        ("worker",),
        ("topics", "create"),
        ("replay", "HISTORY"),
        ("verify",),
        ("inspect", "suppressed"),
        ("explain", "m-1"),
        ("stats",),
        ("policy", "history"),
        ("capture", "--from", "2h", "--out", "CAPTURE"),
    ],
    ids=lambda v: " ".join(v),
)
def test_every_command_fails_in_one_line_on_a_mismatched_listener(
    listeners: dict[str, str], tmp_path: Path, verb: tuple[str, ...]
) -> None:
    """The hostile test's case: SCRAM against the PLAINTEXT listener made some commands
    say "no broker answers" and others hang for 150 s."""
    history = tmp_path / "h.jsonl"
    write_history(history, generate(3, seed=1))
    args = [
        str(history) if a == "HISTORY" else str(tmp_path / "c.jsonl") if a == "CAPTURE" else a
        for a in verb
    ]
    security = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "u", "sasl_password": "p"}  # fmt: skip
    # the timeout bounds a hang (the hostile test saw 150 s of silence); it measures nothing
    res = cli(_env(listeners["plain"], "tsec", tmp_path, **security), *args, timeout=60)
    assert res.returncode == 2, (verb, res.stdout[-500:], res.stderr[-2000:])
    assert res.stderr.strip().splitlines() == [res.stderr.strip()], res.stderr
    assert "is not a SASL listener" in res.stderr
    assert not res.stdout.strip(), res.stdout  # nothing printed before the error


def test_worker_and_tools_through_sasl_ssl_and_ssl(
    listeners: dict[str, str], tmp_path: Path
) -> None:
    """Topics made, a history replayed into Kafka and decided by a worker, all through
    SASL_SSL with SCRAM-SHA-512; the decisions read and inspected through SSL."""
    run = f"t{uuid.uuid4().hex[:10]}"
    sasl_env = _env(listeners["sasl_ssl"], run, tmp_path, **_sasl_ssl(listeners))
    ssl_env = _env(listeners["ssl"], run, tmp_path, **_ssl(listeners))
    history = tmp_path / "history.jsonl"
    records = generate(40, seed=7)
    write_history(history, records)
    candidates = [r["value"]["message_id"] for r in records if r["topic"] == "outbound"]
    wanted = set(candidates)  # some ids come twice on purpose: each copy is decided

    res = cli(sasl_env, "topics", "create")
    assert res.returncode == 0, res.stderr
    create_topics(settings_from_env(sasl_env), log=False, configs={"retention.ms": "-1"})
    res = cli(sasl_env, "replay", str(history))
    assert res.returncode == 0, res.stderr

    sasl = Env(settings_from_env(sasl_env), sasl_env, tmp_path)
    worker = sasl.worker()
    try:
        ssl_side = Env(settings_from_env(ssl_env), ssl_env, tmp_path)

        def decided(got: dict[str, list]) -> bool:
            ids = {decision_key(role, r.value)[0] for role, rs in got.items() for r in rs}
            return ids >= wanted and sum(len(v) for v in got.values()) >= len(candidates)

        got = ssl_side.collect(("send_queue", "suppressed"), decided, timeout=180, worker=worker)
    finally:
        worker.stop()
    assert sum(len(v) for v in got.values()) == len(candidates)
    assert b"state recovered" in worker.log.read_bytes()
    res = cli(ssl_env, "inspect", "all")
    assert res.returncode == 0, res.stderr
    some = sorted(wanted)[:3]
    assert all(mid in res.stdout for mid in some), res.stdout[-2000:]
