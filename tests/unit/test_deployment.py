"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine): check structure."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_the_readme_names_exist(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme
    for name in ("kafka", "topics", "worker"):
        assert name in compose["services"], name
        assert f"`{name}`" in readme, f"README should name the {name} service"


def test_kafka_is_kraft_3_9(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "healthcheck" in kafka
    internal = next(
        x for x in env["KAFKA_ADVERTISED_LISTENERS"].split(",") if x.startswith("INTERNAL://")
    )
    assert (
        internal.removeprefix("INTERNAL://")
        == compose["services"]["worker"]["environment"]["TRIGGER_SANITY_BOOTSTRAP_SERVERS"]
    )


def test_worker_env_matches_the_settings_class(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for svc in ("topics", "worker"):
        env = compose["services"][svc]["environment"]
        for key in env:
            assert key.startswith(ENV_PREFIX), key
            name = key.removeprefix(ENV_PREFIX).lower()
            assert name in fields, f"{svc}: {key} is not a setting"
        Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items()})


def test_startup_order(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    assert svc["topics"]["command"] == ["topics", "create"]
    assert svc["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert svc["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert svc["worker"]["build"] == "." and svc["worker"]["command"] == ["worker"]


def test_dockerfile_installs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11" in text and "pip install ." in text
    assert 'ENTRYPOINT ["trigger-sanity"]' in text
    copied = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    sources = {src for srcs in copied for src in srcs}
    for path in ("schemas", "streams", "pyproject.toml", "README.md"):
        assert path in sources, f"the Dockerfile never copies {path} (it copies {sorted(sources)})"
    # `pip install .` must come after the sources are copied, or the image has no package
    assert text.index("RUN pip install .") > max(text.index(f"COPY {p}") for p in ("streams",))


def test_readme_documents_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        assert f"`{ENV_PREFIX}{name.upper()}`" in readme, (
            f"README misses {ENV_PREFIX}{name.upper()}"
        )
        default = field.default
        if default is not None and not isinstance(default, Path):
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            row = next(
                line for line in readme.splitlines() if f"`{ENV_PREFIX}{name.upper()}`" in line
            )
            assert shown in row, f"README row for {name} should show default {shown}: {row}"


def _readme_test_command() -> str:
    """The command the README's quick start gives for the whole suite."""
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    tests = [c for c in commands if c.startswith("make test")]
    assert len(tests) == 1, f"the quick start should give one test command, not {tests}"
    return tests[0]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    """Not a substring: ``make test-unit`` in .ci/run would pass a substring check."""
    want = _readme_test_command()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert want == "make test"
    assert want in ci, f".ci/run should run `{want}` as a command of its own: {ci}"


def test_nothing_in_the_repository_points_outside_it() -> None:
    """Users get the repository alone: no file may send them to a sibling directory."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = "../" + "shared"  # spelled apart so that this file does not match itself
    offenders = [
        f for f in tracked
        if (ROOT / f).is_file() and outside in (ROOT / f).read_text(errors="replace")
    ]  # fmt: skip
    assert offenders == []


def test_a_store_the_worker_cannot_write_correctly_is_refused() -> None:
    import pydantic

    from streams.settings import Settings

    assert not Settings(store="memory://").keeps_local_copy
    assert Settings(store="rocksdb://").keeps_local_copy  # ours: memory plus a local copy
    with pytest.raises(pydantic.ValidationError, match="not supported: use memory://"):
        Settings(store="aerospike://")


def test_a_printed_hint_runs_when_pasted_into_a_shell_without_the_virtualenv(
    tmp_path: Path,
) -> None:
    """``make demo`` ends with a command to paste; the shell that ran make has no
    ``.venv/bin`` on its PATH."""
    from streams.hints import command

    hint = command("--version", env={"TRIGGER_SANITY_LOG_LEVEL": "INFO"})
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(
        hint, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, (hint, res.stderr)
    assert res.stdout.startswith("trigger-sanity ")


def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    import logging

    import orjson

    from streams.logs import JsonFormatter

    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        exc = sys.exc_info()
    record = logging.LogRecord("trigger_sanity.worker", logging.WARNING, __file__, 1,
                               "dead-letter %s[%d]@%d", ("purchases", 3, 17), exc)  # fmt: skip
    record.partition = 3
    out = orjson.loads(JsonFormatter().format(record))
    assert out["level"] == "WARNING" and out["logger"] == "trigger_sanity.worker"
    assert out["message"] == "dead-letter purchases[3]@17" and out["partition"] == 3
    assert out["time"].endswith("+00:00") and "ValueError: boom" in out["exc"]
