"""The one client of the worker's web pages (``state``, ``stats``).

The worker binds its web server to one address (customer data stays on it), so
"nothing answers" is the common failure and gets its own exception: the commands
turn it into a hint about the address, and the worker's own error text (unknown
customer, partition owned elsewhere) into a plain one-line message.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from streams.settings import Settings


class WorkerRefused(Exception):
    """The worker answered with an error; the message is the worker's own text."""


class NoAnswer(Exception):
    """Nothing answered at the address (or not with what a worker says); the message is
    the underlying error's."""


class WorkerClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    @classmethod
    def of(cls, settings: Settings, url: str | None = None) -> WorkerClient:
        """``url`` (``--url``) or the configured bind address."""
        return cls(url or f"http://{settings.web_host}:{settings.web_port}")

    def customer(self, customer_id: str) -> Any:
        """What the worker knows of one customer (JSON)."""
        url = f"{self.base_url}/customers/{urllib.parse.quote(customer_id, safe='')}/"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = orjson.loads(exc.read() or b"{}").get("error", exc.reason)
            raise WorkerRefused(detail) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise NoAnswer(str(exc)) from exc
        return orjson.loads(body)

    def held(self, message_id: str) -> Any:
        """Whether a campaign trip holds a message on this worker (JSON). Any failure is
        ``NoAnswer``, as for ``stats``."""
        url = f"{self.base_url}/held/{urllib.parse.quote(message_id, safe='')}/"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return orjson.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NoAnswer(str(exc)) from exc

    def stats(self) -> Any:
        """The worker's stats page (JSON). Any failure, an error status included, is
        ``NoAnswer``: stats only adds what the worker holds now to what the topics say."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/stats/", timeout=5) as resp:
                return orjson.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NoAnswer(str(exc)) from exc
