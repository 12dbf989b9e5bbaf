"""``state`` and ``stats`` through the one client of the worker's pages: the worker's own
error text and exit 1, a hint and exit 2 when nothing answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

import streams.ops.stats
from streams.cli.main import main
from streams.cli.worker_client import NoAnswer, WorkerClient, WorkerRefused
from streams.ops.stats import DecisionStats

PAGES = {
    "/customers/c%2F1/": (200, {"customer_id": "c/1", "held": []}),
    "/customers/nobody/": (404, {"error": "customer nobody is not known to this worker"}),
    "/stats/": (200, {"held": 3}),
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = PAGES.get(self.path, (404, {}))
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url() -> str:
    """An address nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_client(worker_url: str, dead_url: str) -> None:
    client = WorkerClient(worker_url)
    assert client.customer("c/1") == {"customer_id": "c/1", "held": []}
    assert client.stats() == {"held": 3}
    with pytest.raises(WorkerRefused, match=r"^customer nobody is not known to this worker$"):
        client.customer("nobody")
    with pytest.raises(NoAnswer, match="Connection refused"):
        WorkerClient(dead_url).customer("c/1")
    with pytest.raises(NoAnswer, match="HTTP Error 404"):
        WorkerClient(worker_url + "/nowhere").stats()


@pytest.mark.parametrize(
    ("case", "customer", "dead", "code", "out", "err"),
    [
        ("known", "c/1", False, 0, '{\n  "customer_id": "c/1",\n  "held": []\n}\n', ""),
        ("unknown", "nobody", False, 1, "",
         "trigger-sanity: customer nobody is not known to this worker\n"),
        ("no_worker", "c/1", True, 2, "", "trigger-sanity: the worker's web server at {url} "
         "did not answer (<urlopen error [Errno 111] Connection refused>): is a worker "
         "running with TRIGGER_SANITY_WEB_ENABLED=true, and is this its "
         "TRIGGER_SANITY_WEB_HOST/PORT (or give --url)?\n"),
    ],
)  # fmt: skip
def test_state(
    capsys: pytest.CaptureFixture[str],
    worker_url: str,
    dead_url: str,
    case: str,
    customer: str,
    dead: bool,
    code: int,
    out: str,
    err: str,
) -> None:
    url = dead_url if dead else worker_url
    assert main(["state", customer, "--url", url]) == code, case
    assert capsys.readouterr() == (out, err.format(url=url)), case


@pytest.mark.parametrize("dead", [False, True])
def test_stats_takes_held_now_from_the_worker_when_it_answers(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    worker_url: str,
    dead_url: str,
    dead: bool,
) -> None:
    seen: list[DecisionStats] = []

    def collect(settings: object, since: int, until: int, interval: int) -> DecisionStats:
        seen.append(DecisionStats(since, until, interval))
        return seen[-1]

    monkeypatch.setattr(streams.ops.stats, "collect", collect)
    url = dead_url if dead else worker_url
    assert main(["stats", "--url", url, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["held_now"] == (None if dead else 3)
    assert seen[0].held_source == (
        f"worker web page not reachable at {url}: <urlopen error [Errno 111] Connection refused>"
        if dead
        else f"the worker at {url}"
    )
