"""Headless Chromium driven over the DevTools protocol, for the tests that look at a live page.

`chromium --dump-dom --virtual-time-budget=N` returns whatever the page shows when N ms of
*virtual* time have passed; a page that fetches from a server (the MLflow UI) runs its requests
in real time, so on a loaded machine the dump can come back before the data arrived.
`Browser.show` waits in real time instead: it loads the address and reads the DOM every half
second until the test's condition holds, or the deadline passes (then the test sees what the page
did show).
The websocket client is aiohttp's (installed with DVC's HTTP remote support).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Shown:
    """What the page showed: its DOM, its visible text, and how long the wait took."""

    html: str
    text: str
    seconds: float


class Browser:
    """One headless Chromium with a DevTools port; use as a context manager."""

    def __init__(self, chromium: str, profile: Path, window: tuple[int, int] = (1400, 2400)):
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)
        self.profile = profile
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
               f"--window-size={window[0]},{window[1]}", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _port(self, timeout: float = 60) -> int:
        """The DevTools port Chromium chose (it writes it into the profile once listening)."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
            lines = marker.read_text().splitlines() if marker.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.2)
        raise TimeoutError(f"chromium wrote no DevTools port into {marker} in {timeout:.0f} s")

    def show(self, url: str, ready: Callable[[str], bool], timeout: float = 180) -> Shown:
        """Load `url` and wait until `ready(dom)` holds (or `timeout` seconds pass). The tab goes
        to about:blank first, so a page that differs from the last only after `#` is a fresh load
        and not the last page's DOM."""
        return asyncio.run(self._show(self._port(), url, ready, timeout))

    @staticmethod
    async def _show(port: int, url: str, ready: Callable[[str], bool], timeout: float) -> Shown:
        started = time.monotonic()

        def left() -> float:  # seconds to the deadline
            return timeout - (time.monotonic() - started)

        async with aiohttp.ClientSession() as http:
            page = None
            while page is None:  # the port can be open before the first tab is
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = json.loads(await resp.text())
                page = next((t for t in targets if t.get("type") == "page"), None)
                if page is None and left() <= 0:
                    raise TimeoutError(f"chromium opened no tab in {timeout:.0f} s")
                await asyncio.sleep(0.2 if page is None else 0)
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params) -> dict:
                    sent = next(ids)
                    await ws.send_json({"id": sent, "method": method, "params": params})
                    while True:
                        # a reply that never comes ends the wait (after the deadline, each
                        # call still gets a few seconds: the last one reads the page's text)
                        msg = await asyncio.wait_for(ws.receive_json(), max(left(), 5))
                        if msg.get("id") == sent:
                            if "error" in msg:
                                raise RuntimeError(f"DevTools {method}: {msg['error']}")
                            return msg["result"]

                async def read(expression: str) -> str:
                    got = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    return str(got["result"].get("value", ""))

                for address in ("about:blank", url):
                    await call("Page.navigate", url=address)
                    while address == "about:blank" and await read("location.href") != address:
                        if left() <= 0:
                            raise TimeoutError(f"the tab did not go to about:blank in {timeout} s")
                        await asyncio.sleep(0.1)
                while True:
                    html = await read("document.documentElement.outerHTML")
                    if ready(html) or left() <= 0:
                        text = await read("document.body ? document.body.innerText : ''")
                        return Shown(html, text, time.monotonic() - started)
                    await asyncio.sleep(0.5)
