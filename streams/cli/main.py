"""``trigger-sanity``: the worker, topic admin, replay, policy and ops commands.

Configuration comes from ``TRIGGER_SANITY_*`` environment variables (see the
README); every command's ``--help`` says what it does and what it needs.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import orjson
from kafka.errors import KafkaError

from streams import __version__
from streams.contract.topics import INPUT_ROLES
from streams.core.policy import load_policy, policy_as_toml
from streams.errors import TriggerSanityError
from streams.hints import command
from streams.settings import Settings, isolated_env, settings_from_env


def _settings() -> Settings:
    return Settings()


def cmd_worker(args: argparse.Namespace) -> int:
    import faust  # imported here: the offline commands must not pay for faust

    from streams.kafka.admin import check_inputs
    from streams.worker.worker import Worker

    settings = _settings()
    policy = load_policy(args.policy or settings.policy_file)
    partitions = check_inputs(settings)
    if partitions != settings.partitions:
        print(
            f"input topics have {partitions} partitions (TRIGGER_SANITY_PARTITIONS says "
            f"{settings.partitions}): using {partitions}",
            flush=True,
        )
        settings = settings.model_copy(update={"partitions": partitions})
    worker = Worker(settings, policy)
    print(
        f"trigger-sanity {__version__} worker: app {settings.app_id} "
        f"on {settings.bootstrap_servers}, "
        f"policy {policy.version}, inputs {', '.join(settings.topics.inputs)}",
        flush=True,
    )
    from streams.logs import logging_config

    fw = faust.Worker(
        worker.app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        logging_config=logging_config(settings.log_format, settings.log_level),
    )
    # faust's terminal spinner sets the root logger to DEBUG (at WARNING and above) so that
    # every library debug line spins it: thousands of log records a second for nothing.
    fw.spinner = None
    # kafka-python (admin lookups) logs every connection at INFO: not news for an operator.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    fw.execute_from_commandline()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.kafka.admin import create_topics

    settings = _settings()
    if args.action == "create":
        create_topics(settings)
        return 0
    from streams.kafka.admin import admin_client, partition_counts

    admin = admin_client(settings)
    try:
        counts = partition_counts(admin, settings.topics.all)
    finally:
        admin.close()
    for name in settings.topics.all:
        print(f"{name}: {str(counts[name]) + ' partitions' if name in counts else 'missing'}")
    return 0 if len(counts) == len(settings.topics.all) else 1


def _open_out(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdout.buffer
    if path.endswith(".gz"):
        return gzip.open(path, "wb")  # type: ignore[return-value]
    return open(path, "wb")


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.offline.replay import replay_offline
    from streams.ops.produce import print_progress, produce_history

    if args.jobs > 1 and not args.offline:
        print("trigger-sanity: --jobs is for --offline replays", file=sys.stderr)
        return 2
    if args.jobs > 1 and (args.report or args.against):
        print("trigger-sanity: --report and --against run in one process: drop --jobs",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.offline and (args.report or args.against):
        return _replay_report(args)
    if args.offline:
        policy = load_policy(args.policy or _settings().policy_file)
        with ExitStack() as stack:
            out = stack.enter_context(_open_out(args.out)) if args.out else None
            late = stack.enter_context(_open_out(args.late_out)) if args.late_out else None
            partitions = args.partitions or _settings().partitions
            history = None
            if args.policy_history:
                from streams.core.policy_history import history_from_file

                history = history_from_file(policy, args.policy_history)
            summary = replay_offline(
                args.file,
                policy,
                out,
                print_progress("replay"),
                late,
                partitions=partitions,
                history=history,
                jobs=args.jobs,
            )
        print(summary.render(), file=sys.stderr if args.out == "-" else sys.stdout)
        return 0
    from collections import Counter

    from kafka import KafkaProducer

    from streams.cli.progress import Progress, count_lines
    from streams.kafka.admin import check_inputs
    from streams.ops.produce import rebase_delta

    settings = _settings()
    check_inputs(settings)  # the broker answers and every topic exists, or exit 2 saying so
    delta = rebase_delta(args.file, int(time.time() * 1000)) if args.rebase_time else 0
    if delta:
        print(f"rebasing times by {delta / 86_400_000:+,.2f} days (the history ends now)")
    bar = Progress("produced", count_lines(args.file))
    counts: Counter[str] = Counter()
    producer = KafkaProducer(linger_ms=20, **settings.kafka_producer_kwargs())
    try:
        names = {r: settings.topics[r] for r in INPUT_ROLES}
        started = time.perf_counter()
        sent, bad = produce_history(
            args.file, producer, names, args.speedup, bar.update, delta, counts
        )
    finally:
        producer.close()
    bar.finish()
    took = time.perf_counter() - started
    print(f"produced {sent} records in {took:.1f}s ({sent / took if took else 0:,.0f}/s)")
    for role in INPUT_ROLES:
        print(f"  {settings.topics[role]}: {counts.get(role, 0):,}")
    for ln, err in bad[:20]:
        print(f"  skipped line {ln}: {err}")
    return 0


def _replay_report(args: argparse.Namespace) -> int:
    from streams.offline.report import (
        collect,
        compare,
        diff_summary,
        read_truth,
        render,
        render_diff,
    )

    policy = load_policy(args.policy or _settings().policy_file)
    partitions = args.partitions or _settings().partitions
    history = None
    if args.policy_history:
        from streams.core.policy_history import history_from_file

        history = history_from_file(policy, args.policy_history)
    got, summary = collect(args.file, policy, partitions, history)
    print(summary.render())
    title = Path(args.file).name
    if args.against:
        other = load_policy(args.against)
        got_b, _ = collect(args.file, other, partitions)
        changes = compare(got, got_b)
        print(diff_summary(changes, policy.version, other.version))
        if args.report:
            Path(args.report).write_text(render_diff(changes, policy.version, other.version,
                                                     title))  # fmt: skip
            print(f"wrote {args.report}")
        return 0
    truth = read_truth(args.truth) if args.truth else None
    Path(args.report).write_text(render(title, got, summary, policy, truth))
    print(f"wrote {args.report} (open it in a browser; it needs no network)")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    if args.action == "show":
        policy = load_policy(args.file or _settings().policy_file)
        sys.stdout.write(policy_as_toml(policy))
        return 0
    if args.action in ("history", "rollback"):
        return _policy_versions(args)
    if not args.file:
        print(f"trigger-sanity: policy {args.action} needs a FILE", file=sys.stderr)
        return 2
    policy = load_policy(args.file)
    if args.action == "check":
        print(f"{args.file}: valid (version {policy.version})")
        return 0
    from streams.ops.policy_topic import effective_time, publish

    settings = _settings()
    effective = effective_time(args.at, args.lead, int(time.time() * 1000))
    rec = publish(settings, policy, effective, by=args.by, note=args.note)
    print(
        f"applied {policy.version} as seq {rec.seq} on {settings.topics['policy']}: "
        f"candidates created from {rec.effective_at} on are decided by it "
        f"(see: {command('policy', 'history')})"
    )
    return 0


def _policy_versions(args: argparse.Namespace) -> int:
    from streams.core.clock import human_span, iso
    from streams.core.policy_history import as_mapping
    from streams.ops.policy_topic import current_history, effective_time, publish, read_records

    settings = _settings()
    records = read_records(settings)
    now = int(time.time() * 1000)
    if args.action == "history":
        if args.json:
            for rec in records:
                print(orjson.dumps(rec.model_dump(mode="json")).decode())
            return 0
        hist = current_history(settings, records)
        in_force = hist.version_at(now)
        base = hist.base
        print(f"base (the workers' policy file): {base.version}")
        if not records:
            print("no version applied live yet")
            return 0
        print(f"{'seq':>4}  {'version':<24} {'effective from':<25} {'applied by':<12} note")
        for rec in records:
            mark = "*" if in_force.seq == rec.seq else " "
            extra = f"rollback of {rec.rollback_of}" if rec.rollback_of else (rec.note or "")
            if rec.effective_ms > now:
                extra = f"(takes effect in {human_span(rec.effective_ms - now)}) {extra}"
            rejected = dict(hist.rejected).get(rec.seq)
            if rejected:
                extra = f"NOT APPLIED: {rejected}"
            print(
                f"{rec.seq:>4}{mark} {rec.version:<24} {rec.effective_at:<25} "
                f"{rec.applied_by:<12} {extra}"
            )
        print(f"* in force now ({iso(now)}): {in_force.policy.version}"
              + (" (the base)" if in_force.record is None else ""))  # fmt: skip
        return 0
    # rollback: back to what was in force just before the latest version took effect
    if not records:
        print("trigger-sanity: nothing to roll back: no version was applied live", file=sys.stderr)
        return 1
    hist = current_history(settings, records)
    latest = records[-1]
    before = hist.at(latest.effective_ms - 1)
    if before.version == latest.version:
        print(f"trigger-sanity: {latest.version} is already what was in force before",
              file=sys.stderr)  # fmt: skip
        return 1
    effective = effective_time(args.at, args.lead, now)
    rec = publish(
        settings,
        before,
        effective,
        by=args.by,
        note=args.note,
        rollback_of=latest.version,
        records=records,
    )
    assert rec.policy == as_mapping(before)
    print(
        f"rolled back {latest.version} -> {before.version} (seq {rec.seq}): candidates "
        f"created from {rec.effective_at} on are decided by {before.version}"
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from streams.contract.history import write_history
    from streams.offline.generator import generate

    if args.profile == "realistic":
        from streams.offline.scenarios import write_realistic

        out = Path(args.out)
        truth = Path(args.truth) if args.truth else truth_path(out)
        started = time.perf_counter()
        n, candidates = write_realistic(
            out, truth, args.customers, args.seed, args.days, int(args.jitter * 1000)
        )
        took = time.perf_counter() - started
        print(
            f"wrote {n:,} records for {args.customers:,} customers to {out} "
            f"({n / took if took else 0:,.0f} records/s) and the decision the contract "
            f"requires for each of the {candidates:,} candidates to {truth}"
        )
        check = command(
            "replay", str(out), "--offline", "--report", "report.html", "--truth", str(truth)
        )
        print(f"check a replay against it: {check}")
        return 0
    records = generate(args.customers, seed=args.seed)
    write_history(args.out, records)
    print(f"wrote {len(records)} records for {args.customers} customers to {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import shutil

    from streams.ops.inspect import (
        Filters,
        consume,
        json_line,
        parse_when,
        row_of,
        table_header,
        table_line,
    )

    settings = _settings()
    roles = {
        "suppressed": ("suppressed",),
        "send-queue": ("send_queue",),
        "dead-letter": ("dead_letter",),
        "late-evidence": ("late_evidence",),
        "all": ("send_queue", "suppressed", "dead_letter", "late_evidence"),
    }[args.topic]
    now = int(time.time() * 1000)
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now) if args.until else None
    keep = Filters(args.rule, args.trigger, args.channel, args.customer)
    width = shutil.get_terminal_size((140, 24)).columns
    read: list[int] = []
    shown = 0
    if not args.json:
        print(table_header(width), flush=True)
    for role, rec in consume(
        settings,
        roles,
        from_beginning=not args.new,
        follow=args.follow,
        since_ms=since,
        until_ms=until,
        customer=args.customer,
        read=read,
    ):
        row = row_of(role, rec.value, rec.key, rec.timestamp)
        if not keep(row):
            continue
        if args.json:
            sys.stdout.buffer.write(json_line(role, rec) + b"\n")
            sys.stdout.flush()
        elif row is None:
            print(f"[{role}] unreadable record at {rec.topic}[{rec.partition}]@{rec.offset}")
        else:
            print(table_line(row, int(time.time() * 1000), width), flush=True)
        shown += 1
        if args.limit and shown >= args.limit:
            break
    where = "the customer's partition" if args.customer else "every partition"
    print(
        f"{shown} shown of {sum(read)} read from {where}"
        + (" (positioned by time, not scanned)" if since is not None else ""),
        file=sys.stderr,
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from streams.ops.explain import ROLES, explain
    from streams.ops.inspect import parse_when

    settings = _settings()
    since = parse_when(args.since, int(time.time() * 1000)) if args.since else None
    story = explain(settings, args.message_id, args.customer, since)
    if not story.records:
        where = f"customer {args.customer}'s partition" if args.customer else "every partition"
        span = f"since {args.since}" if args.since else "from the beginning"
        print(
            f"trigger-sanity: {args.message_id} is not on "
            f"{', '.join(settings.topics[r] for r in ROLES)} ({where}, {span})",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(orjson.dumps(story.as_json()).decode())
    else:
        print(story.render())
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from streams.ops.inspect import parse_when
    from streams.ops.release import Refused, release

    settings = _settings()
    since = parse_when(args.since, int(time.time() * 1000)) if args.since else None
    try:
        audit = release(settings, args.message_id, args.reason, args.by, args.customer, since)
    except Refused as exc:
        print(f"trigger-sanity: {exc}", file=sys.stderr)
        return 1
    print(
        f"released {audit['message_id']} (customer {audit['customer_id']}, suppressed by "
        f"{audit['rule']}) to {settings.topics['send_queue']}; recorded on "
        f"{settings.topics['releases']} as released by {audit['released_by']} at "
        f"{audit['released_at']}"
    )
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = _settings()
    base = args.url or f"http://{settings.web_host}:{settings.web_port}"
    url = f"{base}/customers/{urllib.parse.quote(args.customer_id, safe='')}/"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        detail = orjson.loads(exc.read() or b"{}").get("error", exc.reason)
        print(f"trigger-sanity: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"trigger-sanity: the worker's web server at {base} did not answer ({exc}): is a "
            "worker running with TRIGGER_SANITY_WEB_ENABLED=true, and is this its "
            "TRIGGER_SANITY_WEB_HOST/PORT (or give --url)?",
            file=sys.stderr,
        )
        return 2
    print(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from streams.core.policy import parse_duration_ms
    from streams.ops.inspect import parse_when
    from streams.ops.stats import collect

    settings = _settings()
    now = int(time.time() * 1000)
    since = parse_when(args.since, now)
    until = parse_when(args.until, now) if args.until else now
    span = max(1, until - since)
    interval = parse_duration_ms(args.interval) if args.interval else max(60_000, span // 12)
    stats = collect(settings, since, until, max(1000, interval))
    url = args.url or f"http://{settings.web_host}:{settings.web_port}"
    try:
        with urllib.request.urlopen(f"{url}/stats/", timeout=5) as resp:
            stats.held_now = int(orjson.loads(resp.read()).get("held", 0))
        stats.held_source = f"the worker at {url}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        stats.held_source = f"worker web page not reachable at {url}: {exc}"
    if args.json:
        print(orjson.dumps(stats.as_json()).decode())
    else:
        print(stats.render())
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from streams.cli.progress import Progress
    from streams.ops.capture import capture
    from streams.ops.inspect import parse_when

    settings = _settings()
    now = int(time.time() * 1000)
    start = parse_when(args.from_, now)
    end = parse_when(args.to, now) if args.to else now
    bar = Progress("captured")
    got = capture(settings, start, end, Path(args.out), bar.update)
    bar.done = got.records
    bar.finish()
    print(f"wrote {got.records:,} records ({iso_span(start, end)}) to {args.out}")
    for role in INPUT_ROLES:
        print(f"  {settings.topics[role]}: {got.counts.get(role, 0):,}")
    if got.skipped:
        print(f"  left out {len(got.skipped)} record(s) whose value is not JSON (dead letters):")
        for topic, p, off, why in got.skipped[:10]:
            print(f"    {topic}[{p}]@{off}: {why}")
    print(f"replay it with: {command('replay', args.out, '--offline')}")
    return 0


def truth_path(out: Path) -> Path:
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + ".truth.jsonl")


def iso_span(start: int, end: int) -> str:
    from streams.core.clock import iso

    return f"{iso(start)} .. {iso(end)}"


def cmd_verify(args: argparse.Namespace) -> int:
    from streams.ops.verify import conserve, read_topics

    settings = _settings()
    got = read_topics(settings, ("outbound", "send_queue", "suppressed", "dead_letter"))
    offline = None
    if args.history:
        import io

        from streams.offline.replay import replay_offline

        policy = load_policy(args.policy or settings.policy_file)
        buf = io.BytesIO()
        partitions = args.partitions or settings.partitions
        replay_offline(args.history, policy, buf, partitions=partitions)
        offline = [
            (d["message_id"], d["action"], d["rule"], tuple(d["removed_skus"]))
            for d in map(orjson.loads, buf.getvalue().splitlines())
        ]
    result = conserve(
        got["outbound"],
        [v for v in got["send_queue"] if v is not None],
        [v for v in got["suppressed"] if v is not None],
        [v for v in got["dead_letter"] if v is not None],
        settings.topics["outbound"],
        offline,
    )
    if args.json:
        print(orjson.dumps(result.as_dict()).decode())
    else:
        print(result.render())
    return 0 if result.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Broker must answer; runs topics, a worker subprocess, the demo history, prints decisions."""
    from kafka import KafkaProducer

    from streams.contract.history import write_history
    from streams.kafka.admin import create_topics
    from streams.offline.demo import demo_history, expected_outputs
    from streams.ops.inspect import consume, describe
    from streams.ops.produce import produce_history

    run = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    base = _settings()
    ts_env = isolated_env(run, base.bootstrap_servers, data_dir=str(Path(".cache") / run))
    env = {**os.environ, **ts_env}
    settings = settings_from_env(env)
    print(f"== demo run {run}: topics {run}.* on {settings.bootstrap_servers}", flush=True)
    create_topics(settings, log=False)
    history = Path(".cache") / f"{run}.jsonl"
    history.parent.mkdir(exist_ok=True)
    records = demo_history(int(time.time() * 1000))
    want_decided, want_dead = expected_outputs(records)
    write_history(history, records)
    worker_log = Path(".cache") / f"{run}.worker.log"
    print(f"== starting the worker (log: {worker_log})", flush=True)
    with open(worker_log, "wb") as log_fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    try:
        producer = KafkaProducer(**settings.kafka_producer_kwargs())
        names = {r: settings.topics[r] for r in INPUT_ROLES}
        sent, _bad = produce_history(history, producer, names)
        producer.close()
        print(f"== produced {sent} demo records; decisions as they happen:", flush=True)
        decided = dead = 0
        deadline = time.monotonic() + args.timeout

        def done() -> bool:
            return (decided >= want_decided and dead >= want_dead) or time.monotonic() > deadline

        for role, rec in consume(
            settings,
            ("send_queue", "suppressed", "dead_letter", "late_evidence"),
            stop=done,
            follow=True,
        ):
            print("  " + describe(role, rec.value), flush=True)
            if role in ("send_queue", "suppressed"):
                decided += 1
            elif role == "dead_letter":
                dead += 1
        if decided < want_decided:
            print(
                f"!! only {decided} of {want_decided} decisions within {args.timeout}s; "
                f"see {worker_log}",
                flush=True,
            )
            return 1
        topics = settings.topics
        hint = command(
            "inspect",
            "suppressed",
            env={
                "TRIGGER_SANITY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "TRIGGER_SANITY_TOPIC_SUPPRESSED": topics["suppressed"],
            },
        )
        print(
            f"== all {decided} candidates decided; {dead} record(s) dead-lettered. "
            f"Inspect with:\n   {hint}",
            flush=True,
        )
        return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trigger-sanity",
        description="Stops contradictory marketing triggers before they reach a customer. "
        "Configuration: TRIGGER_SANITY_* environment variables or trigger-sanity.toml "
        "(see README).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser(
        "worker",
        help="run the stream processor (faust worker)",
        description="Consume the input topics, decide every candidate, write "
        "send-queue / suppressed / dead-letter / late-evidence. Stops on SIGTERM/SIGINT.",
    )
    w.add_argument(
        "--policy",
        help="policy file (default: TRIGGER_SANITY_POLICY_FILE or the contract defaults)",
    )
    w.set_defaults(fn=cmd_worker)

    t = sub.add_parser(
        "topics",
        help="create or list the contract's topics",
        description="create: every topic, co-partitioned (TRIGGER_SANITY_PARTITIONS, "
        "default 8), idempotently. list: partition counts.",
    )
    t.add_argument("action", choices=["create", "list"])
    t.set_defaults(fn=cmd_topics)

    r = sub.add_parser(
        "replay",
        help="replay a history file offline or into Kafka",
        description="A history file is JSON Lines (optionally gzip): "
        '{"topic": "purchases", "value": {...}, "key"?: ..., "timestamp"?: ...}. '
        "--offline runs the decision core without Kafka and writes one decision per "
        "candidate; without it the records are produced into the input topics.",
    )
    r.add_argument("file", help="history file (.jsonl or .jsonl.gz)")
    r.add_argument("--offline", action="store_true", help="run the core over the file, no Kafka")
    r.add_argument(
        "--out", help="offline: write decisions here (JSON Lines; '-' for stdout; .gz ok)"
    )
    r.add_argument("--late-out", help="offline: write late-evidence findings here")
    r.add_argument("--policy", help="policy file to test (default: contract defaults)")
    r.add_argument(
        "--policy-history",
        help="offline: versions applied live (`policy history --json > FILE`), each deciding "
        "the candidates created from its effective time on, as the workers did",
    )
    r.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="offline: emulate input topics of N partitions, as the worker reads them "
        "(default: TRIGGER_SANITY_PARTITIONS, 8)",
    )
    r.add_argument(
        "--jobs",
        type=_positive,
        default=1,
        help="offline: decide the partitions in N processes (at most one per partition); "
        "the output is the same, byte for byte. The file is read by each, and a first pass "
        "keeps one byte per line in memory (default 1; not with --report or --against)",
    )
    r.add_argument(
        "--report",
        help="offline: write one self-contained HTML report (totals, per rule and trigger, "
        "suppression rate over event time, late evidence and the setting that would have "
        "caught it, examples; with --truth precision and recall per rule)",
    )
    r.add_argument("--truth", help="offline: ground truth, one decision per line (for --report)")
    r.add_argument(
        "--against",
        help="offline: a second policy file; prints (and with --report writes) every message "
        "decided differently under it, and why",
    )
    r.add_argument(
        "--rebase-time",
        action="store_true",
        help="into Kafka: shift every event and record time so the history ends now "
        "(occurred_at, created_at, context.cart_updated_at and record timestamps)",
    )
    r.add_argument(
        "--speedup",
        type=float,
        default=None,
        help="into Kafka: replay event-time gaps N times faster (default: as fast as possible)",
    )
    r.set_defaults(fn=cmd_replay)

    pol = sub.add_parser(
        "policy",
        help="show, check, apply live, list or roll back policy versions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
show FILE?      the effective policy as TOML (defaults filled in)
check FILE      validate a policy file
apply FILE      publish FILE as a new version on the policy topic; every worker
                decides candidates created at or after the effective time
                (--at, or now + --in, default 60s) with it, without a restart.
                Only what a decision reads may change live (rules on/off,
                enforce/monitor, thresholds, rule look-back windows); settle,
                time, state and the send/id retention windows need a restart.
history         the versions applied, when each takes effect, who applied it
                (--json: the records, for `replay --offline --policy-history`)
rollback        publish again the version in force before the latest one""",
    )
    pol.add_argument("action", choices=["show", "check", "apply", "history", "rollback"])
    pol.add_argument("file", nargs="?", help="policy file (TOML or JSON)")
    pol.add_argument("--at", help="apply/rollback: effective time, RFC 3339, in the future")
    pol.add_argument(
        "--in",
        dest="lead",
        default=None,
        help="apply/rollback: effective this long from now (default 60s: time for every "
        "worker to read it first)",
    )
    pol.add_argument("--by", help="who applies it (default: your user name)")
    pol.add_argument("--note", help="why, kept with the version")
    pol.add_argument("--json", action="store_true", help="history: JSON lines")
    pol.set_defaults(fn=cmd_policy)

    i = sub.add_parser(
        "inspect",
        help="read decisions for people (suppressed, send-queue, ...)",
        description="A table of an output topic's records (age, rule or action, customer, "
        "trigger, message, reason), or --json lines for scripts. Reads without a consumer "
        "group: commits nothing, moves nobody's offsets. --since/--until position each "
        "partition by record time (the broker's time index), never scanning from the "
        "beginning; --customer reads only that customer's partition. Prints how many "
        "records were read and shown on stderr.",
    )
    i.add_argument(
        "topic", choices=["suppressed", "send-queue", "dead-letter", "late-evidence", "all"]
    )
    i.add_argument("--rule", help="only this rule id (send-queue: also send, rewrite)")
    i.add_argument("--trigger", help="only this trigger (abandoned_cart, promotion, ...)")
    i.add_argument("--channel", help="only this channel (email, sms, push, in_app)")
    i.add_argument("--customer", help="only this customer id (reads one partition)")
    i.add_argument("--since", help="from this time: 15m, 2h, 3d ago, or 2026-11-22T10:00:00Z")
    i.add_argument("--until", help="up to this time (same forms as --since)")
    i.add_argument("--limit", type=int, default=0, help="stop after N records")
    i.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records")
    i.add_argument("--new", action="store_true", help="start at the end (with --follow)")
    i.add_argument("--json", action="store_true", help="one JSON object per record")
    i.set_defaults(fn=cmd_inspect)

    e = sub.add_parser(
        "explain",
        help="where one message went, by which rule and policy, why, on what evidence",
        description="Reads send-queue, suppressed, dead-letter, late-evidence and releases "
        "for records naming MESSAGE_ID (without a consumer group). --customer reads only "
        "that customer's partition; --since positions by record time instead of reading "
        "from the beginning. Exit 1 when nothing names it.",
    )
    e.add_argument("message_id")
    e.add_argument("--customer", help="the message's customer id (reads one partition)")
    e.add_argument("--since", help="only records since: 15m, 2h, 7d ago, or a time")
    e.add_argument("--json", action="store_true", help="the records as one JSON object")
    e.set_defaults(fn=cmd_explain)

    rel = sub.add_parser(
        "release",
        help="send a suppressed message anyway, once, on record",
        description="Forwards the suppressed message MESSAGE_ID to the send queue with "
        "sanity.released (who, when, why, the rule overridden) and records the same on the "
        "releases topic, in one Kafka transaction: a second release of the same message is "
        "refused (exit 1) saying when and by whom; works with the workers down. Looks for "
        "the suppression in the last 7 days unless --since says otherwise.",
    )
    rel.add_argument("message_id")
    rel.add_argument("--reason", required=True, help="why it is released (kept on record)")
    rel.add_argument("--by", help="who releases it (default: your user name)")
    rel.add_argument("--customer", help="the message's customer id (reads one partition)")
    rel.add_argument("--since", help="look for the suppression since: 30d, or a time")
    rel.set_defaults(fn=cmd_release)

    st = sub.add_parser(
        "state",
        help="what the worker knows of one customer",
        description="Asks the worker's web server (TRIGGER_SANITY_WEB_HOST:PORT, default "
        "127.0.0.1:6066; it binds that address only, so customer data stays on it) for the "
        "customer's state: purchases, returns, sessions, consents, orders, sends, held "
        "candidates. Exit 1 when the worker does not know the customer or does not own "
        "their partition (it says which), 2 when no worker answers.",
    )
    st.add_argument("customer_id")
    st.add_argument("--url", help="the worker's web address (default from the settings)")
    st.set_defaults(fn=cmd_state)

    sp = sub.add_parser(
        "stats",
        help="decisions over a time range: by action, rule, trigger, channel, per interval",
        description="Reads the output topics from --since (positioned by record time) and "
        "counts decisions by action, rule, trigger and channel, the suppression rate, dead "
        "letters and late evidence, and suppressions per rule per --interval so that a jump "
        "stands out. 'held now' comes from the worker's stats page when it answers.",
    )
    sp.add_argument("--since", default="1h", help="15m, 2h, 3d ago, or a time (default 1h)")
    sp.add_argument("--until", help="up to this time (default now)")
    sp.add_argument("--interval", help="bucket size, e.g. 5m (default: the range / 12)")
    sp.add_argument("--url", help="the worker's web address for 'held now'")
    sp.add_argument("--json", action="store_true", help="one JSON object")
    sp.set_defaults(fn=cmd_stats)

    cap = sub.add_parser(
        "capture",
        help="write the input topics over a time range as a history file",
        description="Reads purchases, returns, sessions, consents and outbound from --from "
        "to --to by record time (the broker's time index; nothing before the range is "
        "read; each partition stops at its first record after --to) and writes each "
        "record as a history line (topic, key, timestamp, value "
        "bytes as in Kafka). The file replays offline, or into other topics, to the "
        "decisions the workers made. Values that are not JSON are counted and left out.",
    )
    cap.add_argument("--from", dest="from_", required=True, help="2h, 3d ago, or a time")
    cap.add_argument("--to", help="up to this time (default now)")
    cap.add_argument("--out", required=True, help="history file to write (.jsonl)")
    cap.set_defaults(fn=cmd_capture)

    g = sub.add_parser(
        "generate",
        help="write a deterministic synthetic history file",
        description="tidy (default): every trigger and rule in event-time order. realistic: "
        "automation misbehaving as in the field (cart mails from a snapshot before the "
        "purchase, purchases reaching their topic late, week-old recommendations, retried "
        "message ids, promotion bursts, triggers a day in a queue, receive-only customers), "
        "streamed in bounded memory, with a ground-truth file beside it: per candidate the "
        "decision the contract requires, the rule and why, derived from how each case was "
        "built.",
    )
    g.add_argument("out", help="output file (.jsonl or .jsonl.gz)")
    g.add_argument("--customers", type=int, default=1000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--profile", choices=["tidy", "realistic"], default="tidy")
    g.add_argument("--days", type=int, default=30, help="realistic: days the history spans")
    g.add_argument("--truth", help="realistic: truth file (default: OUT with .truth.jsonl)")
    g.add_argument(
        "--jitter",
        type=float,
        default=3.0,
        help="realistic: seconds by which purchase producers are out of order (default 3)",
    )
    g.set_defaults(fn=cmd_generate)

    v = sub.add_parser(
        "verify",
        help="check that every candidate was decided exactly once (by message_id)",
        description="Reads outbound, send-queue, suppressed and dead-letter up to their end "
        "offsets and reports candidates in, decisions out, missing, duplicated (byte-identical "
        "or not) and, with --history, decisions that differ from the offline replay of the "
        "file the topics were filled from. Exit 0 when nothing is missing or different, 1 "
        "otherwise, 2 when Kafka cannot be reached.",
    )
    v.add_argument("--history", help="the history file produced into the topics")
    v.add_argument("--policy", help="policy for the offline replay (default: the worker's)")
    v.add_argument("--partitions", type=int, default=None, help="partitions for the replay")
    v.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    v.set_defaults(fn=cmd_verify)

    d = sub.add_parser(
        "demo",
        help="run the worker on a built-in demo history and print decisions",
        description="Creates fresh demo topics, starts a worker, produces the demo "
        "history and prints every decision with its rule and reason. Needs a broker "
        "(`make demo` starts one).",
    )
    d.add_argument("--timeout", type=float, default=120.0)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TriggerSanityError as exc:
        print(f"trigger-sanity: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        # No broker, or it refused: one line that says what to do, not a traceback.
        servers = os.environ.get("TRIGGER_SANITY_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        print(
            f"trigger-sanity: Kafka at {servers} did not answer ({type(exc).__name__}): start "
            "a broker (make kafka-start) or set TRIGGER_SANITY_BOOTSTRAP_SERVERS",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; say nothing more (and not at exit either)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
