"""Headless Chromium for the tests that check what a person would see.

Debian's ``chromium`` is driven over the DevTools protocol (a websocket, via
aiohttp, which faust already brings) rather than by a browser-automation
package, because those download their own browser and this machine only
reaches package registries. ``.ci/run`` installs ``chromium`` when absent
(``tools/chromium.sh``); without it these tests fail, never skip.

A page is loaded, given time to run its scripts, and then read by evaluating
JavaScript in it; console errors and uncaught exceptions are collected so a
test can assert that there were none.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The browser binary, or an error that says how to get one."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Chromium found: run `bash tools/chromium.sh` (installs Debian's chromium) "
        "or set CHROMIUM=/path/to/chrome"
    )


@dataclass
class PageResult:
    """What a loaded page showed: values of the expressions asked for, and its errors."""

    values: dict[str, Any]
    console_errors: list[str] = field(default_factory=list)
    screenshot: bytes | None = None


class _Cdp:
    """A minimal DevTools protocol client: numbered requests, events kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            raw = await self.ws.receive(timeout=60)
            if raw.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools connection closed during {method}: {raw.type}")
            data = json.loads(raw.data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result
            if "method" in data:
                self.events.append(data)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for ev in events:
        params = ev.get("params", {})
        if ev.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
            "error",
            "assert",
        ):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif ev.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(str(details.get("exception", {}).get("description") or details))
        elif ev.get("method") == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                out.append(str(entry.get("text")))
    return out


async def _load(
    url: str,
    expressions: dict[str, str],
    ready: str | None,
    timeout: float,
    screenshot: bool,
    width: int,
    height: int,
) -> PageResult:
    profile = tempfile.mkdtemp(prefix="ts-chromium-")
    proc = subprocess.Popen(
        [
            chromium_path(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before it listened")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                await cdp.call("Runtime.enable")
                await cdp.call("Log.enable")
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=url)
                check = ready or "document.readyState === 'complete'"
                while True:
                    got = await cdp.call(
                        "Runtime.evaluate", expression=f"Boolean({check})", returnByValue=True
                    )
                    if got.get("result", {}).get("value") is True:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"page {url} never satisfied: {check}")
                    await asyncio.sleep(0.1)
                values: dict[str, Any] = {}
                for name, expr in expressions.items():
                    got = await cdp.call("Runtime.evaluate", expression=expr, returnByValue=True)
                    if "exceptionDetails" in got:
                        raise RuntimeError(f"{name}: {expr} raised {got['exceptionDetails']}")
                    values[name] = got.get("result", {}).get("value")
                shot = None
                if screenshot:
                    got = await cdp.call("Page.captureScreenshot", format="png")
                    shot = base64.b64decode(got["data"])
                return PageResult(values, _errors(cdp.events), shot)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def load_page(
    url: str,
    expressions: dict[str, str],
    ready: str | None = None,
    timeout: float = 60.0,
    screenshot: bool = False,
    width: int = 1280,
    height: int = 900,
) -> PageResult:
    """Open ``url`` in headless Chromium, wait until ``ready`` (a JS expression) is true,
    and return the value of each JS expression in ``expressions``."""
    return asyncio.run(_load(url, expressions, ready, timeout, screenshot, width, height))
