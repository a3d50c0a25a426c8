"""Open a page in headless Chromium over the DevTools protocol (``--remote-debugging-pipe``, no extra packages).

    with HeadlessPage(Path("leaderboard.html")) as page:
        page.errors                      # console errors and uncaught exceptions so far
        page.evaluate("document.title")
        page.screenshot(Path("shot.png"))
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


class BrowserError(RuntimeError):
    """Chromium is missing, did not answer in time, or reported a protocol error."""


def find_chromium() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError(f"no headless browser found (looked for {', '.join(BINARIES)}); install Debian's chromium")


class HeadlessPage:
    """One page in a fresh headless Chromium (own temporary profile), loaded and ready to script."""

    def __init__(self, url_or_path: str | Path, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.url = Path(url_or_path).resolve().as_uri() if isinstance(url_or_path, Path) else url_or_path
        self.size = (width, height)
        self.timeout = timeout
        self.errors: list[str] = []
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    # -- process and pipe ---------------------------------------------------------------
    def __enter__(self) -> HeadlessPage:
        self._profile = tempfile.TemporaryDirectory(prefix="harness-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: the browser reads commands on fd 3 and writes answers on fd 4
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        args = [find_chromium(), *FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
                f"--window-size={self.size[0]},{self.size[1]}", "about:blank"]
        self._proc = subprocess.Popen(args, close_fds=False, preexec_fn=wire_fds,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._proc.poll() is None:
                self._send("Browser.close", {})
                self._proc.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._profile.cleanup()

    def _send(self, method: str, params: dict, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited (code {self._proc.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message = json.loads(raw)
        if "method" in message:
            self._note_event(message)
        return message

    def _note_event(self, event: dict) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        self._events.append(event)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one DevTools command and return its result (events that arrive meanwhile are recorded)."""
        wanted = self._send(method, params or {}, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message', message['error'])}")
                return message.get("result", {})

    def _wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self._events:
                if event["method"] == method:
                    self._events.remove(event)
                    return event
            self._read_message(deadline)

    def _open(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=self.session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.size[0], "height": self.size[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, self.session)
        self._events.clear()
        self.call("Page.navigate", {"url": self.url}, self.session)
        self._wait_event("Page.loadEventFired")

    # -- what callers use ---------------------------------------------------------------
    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page; a thrown exception raises BrowserError."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (beyond the viewport)."""
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, self.session)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
