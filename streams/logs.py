"""Worker logs as text for people or JSON lines for a log pipeline.

``TRIGGER_SANITY_LOG_FORMAT=json`` writes one object per line: ``time``
(RFC 3339, UTC), ``level``, ``logger``, ``message``, any ``extra`` fields,
and ``exc`` with the traceback when there is one. Messages name topics,
partitions, offsets, ids and counts; message payloads are never logged.

Log lines carry strings that came from input (customer and message ids, topic
names, error texts quoting a value). None of them may forge a line: in text, every
control character of a message is written escaped (``\\n``, ``\\x1b``), and the
lines of a traceback are indented, so a line that starts at the margin is always
the logger's own; JSON escapes them by itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


_ESCAPED = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}

TEXT_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"


def escape(text: str) -> str:
    """``text`` with every character that could break or forge a log line escaped."""
    return text.translate(_ESCAPED)


class TextFormatter(logging.Formatter):
    """One line per message, whatever the message holds; tracebacks indented."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join("  " + escape(line) for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("  " + escape(line) for line in stack_info.split("\n"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().strip(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for faust's worker: text or JSON lines."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "level": level}
        },
        "root": {"level": level, "handlers": ["default"]},
    }
