"""``replay --offline --jobs N``: the partitions decided in N processes give the same
files and the same summary as one process, byte for byte."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli.main import main
from streams.contract.history import write_history
from streams.core.outcomes import Output
from streams.core.policy import DEFAULT_POLICY, Policy, policy_from_mapping
from streams.offline.generator import generate
from streams.offline.replay import ReplaySummary, replay_offline
from tests.helpers import DATA, hot_customers, msg, purchase

FEW_HELD = policy_from_mapping({"version": "few-held", "state": {"max_held": 1}})
"""One held candidate per customer: the rest fail (dead-lettered), in order."""


def _run(path: Path, policy: Policy, partitions: int, jobs: int) -> tuple[bytes, bytes, str]:
    out, late = path.with_suffix(f".{jobs}.out"), path.with_suffix(f".{jobs}.late")
    with open(out, "wb") as fo, open(late, "wb") as fl:
        summary = replay_offline(path, policy, fo, None, fl, partitions=partitions, jobs=jobs)
    # the first line carries the time taken; everything after it must be the same
    return out.read_bytes(), late.read_bytes(), summary.render().split("\n", 1)[1]


def _with_bad_lines(tmp_path: Path) -> Path:
    """The contract history (a bad line, an unreadable value) plus records with no
    customer, a blank line and a generated history around them."""
    lines = (DATA / "contract_history.jsonl").read_bytes().splitlines()
    lines += [orjson.dumps(r) for r in generate(80, seed=3)]
    lines += [
        b"",
        b'{"topic": "purchases", "value": {"event_id": "x", "occurred_at": "2026-01-05T10:00Z"}}',
        b'{"topic": "nowhere", "value": {}}',
        b"not json at all",
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_late(customers: int) -> list[dict[str, Any]]:
    """Per customer, a day apart: another customer's purchase moves the purchases
    stream on, then this customer's earlier purchase is read, then its welcome is
    decided: a welcome sent, with late evidence that it should not have been."""
    out: list[dict[str, Any]] = []
    for i in range(customers):
        day = f"2026-02-{1 + i // 24:02d}T{i % 24:02d}"
        out += [
            purchase(f"{day}:50:00Z", ["SKU-Z"], cid=f"other-{i}"),
            purchase(f"{day}:05:00Z", ["SKU-1"], cid=f"c-{i}"),
            msg(f"w-{i}", "welcome", f"{day}:10:00Z", cid=f"c-{i}"),
        ]
    return out


def _write(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    write_history(path, records)
    return path


CASES = [
    ("tidy_history", lambda t: _write(t, "tidy.jsonl", generate(400, seed=8)), DEFAULT_POLICY),
    ("gzip_history", lambda t: _write(t, "tidy.jsonl.gz", generate(150, seed=9)), DEFAULT_POLICY),
    (
        "events_read_weeks_late",
        lambda t: _write(t, "weeks.jsonl", hot_customers(12, 200, 7, disorder=20)),
        DEFAULT_POLICY,
    ),
    (
        "purchases_read_after_the_welcome",  # late findings, in the order one process finds them
        lambda t: _write(t, "late.jsonl", read_late(60)),
        DEFAULT_POLICY,
    ),
    ("bad_lines_and_no_customer", _with_bad_lines, DEFAULT_POLICY),
    (
        "candidates_over_the_held_limit",  # failures, in order
        lambda t: _write(t, "held.jsonl", generate(200, seed=10)),
        FEW_HELD,
    ),
]


@pytest.mark.parametrize(("make", "policy"), [pytest.param(m, p, id=name) for name, m, p in CASES])
@pytest.mark.parametrize(("partitions", "jobs"), [(8, 2), (8, 3), (3, 8)])
def test_jobs_decide_exactly_as_one_process(
    tmp_path: Path, make: Any, policy: Policy, partitions: int, jobs: int
) -> None:
    path = make(tmp_path)
    one = _run(path, policy, partitions, 1)
    assert one[0], "the history decided nothing"
    assert _run(path, policy, partitions, jobs) == one


def test_the_late_and_failure_cases_really_have_late_findings_and_failures(
    tmp_path: Path,
) -> None:
    """So that the cases above compare something."""
    late = _run(_write(tmp_path, "l.jsonl", read_late(60)), DEFAULT_POLICY, 8, 1)
    assert late[1].count(b"\n") >= 10  # where "other" shares the partition
    held = _run(_write(tmp_path, "h.jsonl", generate(200, seed=10)), FEW_HELD, 8, 1)
    assert "not decided (dead-lettered)" in held[2]
    bad = _run(_with_bad_lines(tmp_path), DEFAULT_POLICY, 8, 1)
    assert "unreadable: " in bad[2]


def test_progress_is_reported_from_the_processes(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.jsonl", generate(600, seed=4))
    seen: list[int] = []
    summary = replay_offline(path, DEFAULT_POLICY, None, seen.append, partitions=8, jobs=2)
    assert seen and seen[-1] == summary.records


def test_jobs_refuse_a_callback_that_needs_the_outputs_here(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.jsonl", generate(5, seed=1))
    outputs: list[Output] = []
    with pytest.raises(ValueError, match="jobs=1"):
        replay_offline(path, DEFAULT_POLICY, None, partitions=4, jobs=2, on_output=outputs.append)


def test_cli_jobs_writes_the_same_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.jsonl.gz", generate(120, seed=2))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    assert main(["replay", str(path), "--offline", "--out", str(a)]) == 0
    assert main(["replay", str(path), "--offline", "--out", str(b), "--jobs", "2"]) == 0
    assert a.read_bytes() == gzip.decompress(b.read_bytes())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--jobs", "2"], "--jobs is for --offline", id="into_kafka"),
        pytest.param(
            ["--offline", "--jobs", "2", "--report", "r.html"], "drop --jobs", id="with_report"
        ),
    ],
)
def test_cli_jobs_refused_where_it_cannot_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = _write(tmp_path, "y.jsonl", generate(5, seed=1))
    assert main(["replay", str(path), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_jobs_must_be_a_positive_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "h.jsonl", "--offline", "--jobs", "0"])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_summary_counts_add_up_across_processes(tmp_path: Path) -> None:
    path = _with_bad_lines(tmp_path)
    one = replay_offline(path, DEFAULT_POLICY, None, partitions=8)
    two = replay_offline(path, DEFAULT_POLICY, None, partitions=8, jobs=2)
    fields = ("records", "candidates", "actions", "rules", "late", "late_unchecked", "bad_lines",
              "unreadable")  # fmt: skip
    assert {f: getattr(two, f) for f in fields} == {f: getattr(one, f) for f in fields}
    assert isinstance(two, ReplaySummary) and two.failed == one.failed


@pytest.mark.parametrize(("partitions", "jobs"), [(255, 2), (256, 2), (300, 3)])
def test_jobs_with_more_partitions_than_a_byte_holds(
    tmp_path: Path, partitions: int, jobs: int
) -> None:
    """The marks for "no customer" and "no record" lie above every partition: with 254
    and 255 as fixed marks, partitions 254 and 255 were decided twice."""
    path = _with_bad_lines(tmp_path)
    assert _run(path, DEFAULT_POLICY, partitions, jobs) == _run(path, DEFAULT_POLICY, partitions, 1)


def _late_run(path: Path, sweep_every: int, jobs: int, tmp: Path) -> tuple[set[bytes], int]:
    late = tmp / f"{sweep_every}-{jobs}.late"
    with open(late, "wb") as fl:
        summary = replay_offline(path, DEFAULT_POLICY, None, None, fl, partitions=4,
                                 sweep_every=sweep_every, jobs=jobs)  # fmt: skip
    lines = late.read_bytes().splitlines()
    assert len(lines) == len(set(lines))
    return set(lines), summary.late_unchecked


@pytest.mark.parametrize(
    ("disorder", "sweep_every"),
    [(0, 1), (0, 7), (0, 50_000), (2, 1), (2, 7), (60, 1), (60, 7), (60, 50_000)],
    ids=lambda v: str(v),
)
def test_late_findings_depend_on_sweeps_only_for_what_was_read_past_the_state_window(
    tmp_path: Path, disorder: int, sweep_every: int
) -> None:
    """Late checks look at everything the state still holds, so a sweep can only take a
    finding away when something was read so far behind its stream that the state may
    have forgotten what it contradicts: an event older than the send window, or a
    message read after its deadline had passed on its own stream. The engine counts
    those checks, the same in every run. A parallel share sweeps at the same records
    of the file as one process."""
    path = _write(tmp_path, "sw.jsonl", hot_customers(10, 300, 3, disorder=disorder))
    swept, unchecked = _late_run(path, sweep_every, 1, tmp_path)
    assert _late_run(path, sweep_every, 2, tmp_path) == (swept, unchecked)
    never, unchecked_never = _late_run(path, 0, 1, tmp_path)
    assert unchecked == unchecked_never
    assert swept <= never
    if unchecked == 0:
        assert swept == never
    assert len(never - swept) <= unchecked
    if disorder == 0:  # everything read in order
        assert unchecked == 0
    if disorder == 60 and sweep_every == 1:  # events read two months late: some of their
        assert never - swept  # messages were swept before they came


def test_a_failing_process_stops_the_others_and_names_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from streams.offline import jobs as replay_jobs

    real = replay_jobs._share

    def share(k: int, *args: Any) -> None:
        if k == 1:
            raise RuntimeError("boom in share 1")
        time.sleep(60)  # stopped by the parent, not waited for
        real(k, *args)

    monkeypatch.setattr(replay_jobs, "_share", share)  # the processes are forked: they see it
    path = _write(tmp_path, "f.jsonl", generate(20, seed=1))
    started = time.monotonic()
    with pytest.raises(replay_jobs.ShareFailed, match="boom in share 1"):
        replay_offline(path, DEFAULT_POLICY, None, partitions=4, jobs=2)
    assert time.monotonic() - started < 30
