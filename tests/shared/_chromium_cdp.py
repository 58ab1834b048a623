"""A minimal Chrome DevTools Protocol client: headless Chromium driven over one websocket.

Kept tiny and offline-safe (websocket-client only): launch, open a page, evaluate JS, and record
console errors, exceptions and network requests as the page loads.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0"]


def find_chromium() -> str | None:
    env = os.environ.get("PB_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str, timeout: float = 60.0):
        import websocket  # websocket-client

        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="pb-chromium-")
        self.log = open(Path(self.profile) / "chromium.log", "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"], stdout=self.log, stderr=subprocess.STDOUT)
        # Chromium writes the port it chose to <profile>/DevToolsActivePort: no stderr parsing.
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            if port_file.exists():
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[1].strip():
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"chromium did not start: {self._log_tail()}")
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def _log_tail(self) -> str:
        try:
            return (Path(self.profile) / "chromium.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "?"

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._recv()
            if reply.get("id") == msg["id"]:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _recv(self) -> dict:
        data = json.loads(self.ws.recv())
        if "method" in data:
            self.events.append(data)
        return data

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict:
        seen = len(self.events)
        for ev in self.events:
            if ev["method"] == method and ev.get("sessionId") == session:
                return ev
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self._recv()
            for ev in self.events[seen:]:
                if ev["method"] == method and ev.get("sessionId") == session:
                    return ev
            seen = len(self.events)
        raise CDPError(f"timed out waiting for {method}")

    def new_page(self, width: int = 1200, height: int = 900) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"], target)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.call(method, params, session=self.session)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event (all images decoded or failed by then)."""
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session)

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError(f"JS error in {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def _events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events
                if e["method"] == method and e.get("sessionId") == self.session]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations included)."""
        out = [f"console.{p['type']}: {p.get('args')}" for p in self._events("Runtime.consoleAPICalled")
               if p["type"] in ("error", "assert")]
        out += [f"exception: {p['exceptionDetails']}" for p in self._events("Runtime.exceptionThrown")]
        out += [f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}"
                for p in self._events("Log.entryAdded") if p["entry"]["level"] == "error"]
        return out

    def requests(self) -> list[str]:
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    def screenshot(self, path: str | Path) -> None:
        import base64
        r = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        Path(path).write_bytes(base64.b64decode(r["data"]))

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})
