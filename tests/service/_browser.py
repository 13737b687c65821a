"""A headless Chromium driven over the DevTools protocol (a websocket): navigate, run JavaScript, wait for the
page, take screenshots. Debian's ``chromium`` package; nothing is downloaded. Every host but 127.0.0.1 is made
unresolvable, so a page that needs a CDN shows it."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service._procs import free_port

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((path for name in BINARIES if (path := shutil.which(name))), None)


class Browser:
    def __init__(self, binary: str, width: int = 1280, height: int = 1000) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="negminer-chromium-")
        port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline but for the service
                f"--remote-debugging-port={port}",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        targets: list[dict[str, Any]] = []
        while time.time() < deadline and not targets:
            try:
                listed = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=1).json()
                targets = [t for t in listed if t.get("type") == "page"]
            except (httpx.HTTPError, ValueError):
                time.sleep(0.2)
        if not targets:
            self.close()
            raise RuntimeError("Chromium did not start")
        self.ws = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.errors: list[str] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are kept as console errors)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", what=f"{url} to load")

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30, what: str | None = None) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(f"(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()")
            if value:
                return value
            time.sleep(0.2)
        text = self.js("document.body ? document.body.innerText.slice(0, 800) : ''")
        raise AssertionError(f"timed out waiting for {what or expression}; the page shows: {text!r}")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)
