"""The demo (``trigger-sanity demo``): topics of its own, a worker in a subprocess, the
built-in demo history produced into them, every decision shown as it comes.

Each run gets its own topic prefix and app id, so a demo never reads an earlier
run's records or offsets, and a broker shared with other work is left alone. The
worker runs as a separate process because that is how it runs in production (and
so this module never imports it); the caller says how to start one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.contract.topics import INPUT_ROLES
from streams.hints import command
from streams.settings import Settings, isolated_env, settings_from_env

Say = Callable[[str], None]

CACHE = Path(".cache")
DECISION_ROLES = ("send_queue", "suppressed", "dead_letter", "late_evidence")


@dataclass(frozen=True, slots=True)
class DemoRun:
    name: str
    settings: Settings
    env: dict[str, str]  # the whole environment of the worker subprocess
    history: Path
    worker_log: Path
    want_decided: int
    want_dead: int


def prepare(base: Settings, say: Say) -> DemoRun:
    """Fresh topics and the demo history file, placed relative to now."""
    from streams.contract.history import write_history
    from streams.kafka.admin import create_topics
    from streams.offline.demo import demo_history, expected_outputs

    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    env = {
        **os.environ,
        **isolated_env(name, base.bootstrap_servers, data_dir=str(CACHE / name)),
    }
    settings = settings_from_env(env)
    say(f"== demo run {name}: topics {name}.* on {settings.bootstrap_servers}")
    create_topics(settings, log=False)
    history = CACHE / f"{name}.jsonl"
    history.parent.mkdir(exist_ok=True)
    records = demo_history(int(time.time() * 1000))
    want_decided, want_dead = expected_outputs(records)
    write_history(history, records)
    worker_log = CACHE / f"{name}.worker.log"
    return DemoRun(name, settings, env, history, worker_log, want_decided, want_dead)


def produce(run: DemoRun) -> int:
    from kafka import KafkaProducer

    from streams.ops.produce import produce_history

    producer = KafkaProducer(**run.settings.kafka_producer_kwargs())
    try:
        names = {r: run.settings.topics[r] for r in INPUT_ROLES}
        sent, _bad = produce_history(run.history, producer, names)
    finally:
        producer.close()
    return sent


def watch(run: DemoRun, timeout_s: float, say: Say) -> tuple[int, int]:
    """Show decisions until every expected one came, or ``timeout_s`` passed: (decided,
    dead-lettered)."""
    from streams.ops.inspect import consume, describe

    decided = dead = 0
    deadline = time.monotonic() + timeout_s

    def done() -> bool:
        enough = decided >= run.want_decided and dead >= run.want_dead
        return enough or time.monotonic() > deadline

    for role, rec in consume(run.settings, DECISION_ROLES, stop=done, follow=True):
        say("  " + describe(role, rec.value))
        if role in ("send_queue", "suppressed"):
            decided += 1
        elif role == "dead_letter":
            dead += 1
    return decided, dead


def inspect_hint(settings: Settings) -> str:
    """A command that reads this run's topics from the user's shell."""
    return command(
        "inspect",
        "suppressed",
        env={
            "TRIGGER_SANITY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "TRIGGER_SANITY_TOPIC_SUPPRESSED": settings.topics["suppressed"],
        },
    )


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def run_demo(base: Settings, timeout_s: float, say: Say, worker_command: Sequence[str]) -> bool:
    """The whole demo; False when not every candidate was decided within ``timeout_s``.

    ``worker_command`` starts a worker that takes its settings from the environment
    (the command line's ``worker``)."""
    run = prepare(base, say)
    say(f"== starting the worker (log: {run.worker_log})")
    with open(run.worker_log, "wb") as log_fh:
        worker = subprocess.Popen(
            list(worker_command), env=run.env, stdout=log_fh, stderr=subprocess.STDOUT
        )
    try:
        sent = produce(run)
        say(f"== produced {sent} demo records; decisions as they happen:")
        decided, dead = watch(run, timeout_s, say)
        if decided < run.want_decided:
            say(
                f"!! only {decided} of {run.want_decided} decisions within {timeout_s}s; "
                f"see {run.worker_log}"
            )
            return False
        say(
            f"== all {decided} candidates decided; {dead} record(s) dead-lettered. "
            f"Inspect with:\n   {inspect_hint(run.settings)}"
        )
        return True
    finally:
        stop(worker)
