"""Text logs cannot be forged by what input puts into a log line."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from streams.logs import JsonFormatter, TextFormatter, escape


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    ei = None
    if exc:
        try:
            raise ValueError("bad value c-1\n[ERROR] forged")
        except ValueError:
            ei = sys.exc_info()
    return logging.LogRecord("trigger_sanity.worker", logging.WARNING, __file__, 1, msg, args, ei)


@pytest.mark.parametrize(
    ("scenario", "value"),
    [
        ("a newline", "c-1\n[ERROR] forged"),
        ("a carriage return", "c-1\r[ERROR] forged"),
        ("a terminal escape", "c-1\x1b[2J"),
        ("a line separator", "c-1\u2028[ERROR] forged"),
        ("a NUL", "c-1\x00"),
    ],
)
def test_a_customer_id_in_a_text_log_line_stays_on_that_line(scenario: str, value: str) -> None:
    line = TextFormatter().format(_record("misrouted record for customer %s", value))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line, scenario
    assert "\u2028" not in line and "\x00" not in line, scenario
    assert escape(value) in line


def test_a_traceback_is_indented_so_no_forged_line_starts_at_the_margin() -> None:
    text = TextFormatter().format(_record("failed on %s", "x", exc=True))
    first, *rest = text.split("\n")
    assert first.startswith("[") and "failed on x" in first
    assert rest and all(line.startswith("  ") for line in rest)
    assert not any(line.startswith("[ERROR]") for line in rest)


def test_json_log_lines_escape_by_themselves() -> None:
    line = JsonFormatter().format(_record("customer %s", "c-1\n[ERROR] forged"))
    assert "\n" not in line and orjson.loads(line)["message"] == "customer c-1\n[ERROR] forged"
